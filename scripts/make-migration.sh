#!/usr/bin/env bash
# Autogenerate a migration from the models against an empty SQLite database at head.
# Usage: scripts/make-migration.sh REV_ID "message"   (for example: 0003 "cases")
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
url="sqlite:///$tmp/m.db"
.venv/bin/python - "$url" "$1" "$2" <<'PY'
import sys
from alembic import command
from saola.db.migrate import alembic_config
cfg = alembic_config(sys.argv[1])
command.upgrade(cfg, "head")
command.revision(cfg, message=sys.argv[3], autogenerate=True, rev_id=sys.argv[2])
PY
rm -rf "$tmp"
f=$(ls src/saola/db/migrations/versions/"$1"_*.py)
# Alembic renders JSONB's text type unqualified; qualify it so the file imports cleanly.
sed -i 's/astext_type=Text()/astext_type=sa.Text()/g' "$f"
.venv/bin/ruff format -q "$f" && .venv/bin/ruff check -q --fix "$f" || true
echo "$f"
