"""Public administrative services pack (dịch vụ công): dossiers received, resolved and on time."""
