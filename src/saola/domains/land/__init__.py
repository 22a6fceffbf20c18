"""Land pack (đất đai): cadastral parcels with planning information, point lookup, public parcel lookup."""
