"""Tests of the operations loop: rules, alerts, cases, SOPs and directives."""
