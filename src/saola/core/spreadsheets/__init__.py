"""Indicator values and plan targets from spreadsheets: template, upload and the `saola import indicators` command."""
