"""The wallboard's overview: panels and map layers from the packs' hooks, KPI values from rollups and latest values."""
