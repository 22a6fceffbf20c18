#!/usr/bin/env bash
# Autogenerate a migration from the models against an empty SQLite database at head.
#   Kernel:  scripts/make-migration.sh 0003 "cases"
#   A pack:  scripts/make-migration.sh land_0001 "parcels" --branch land --path src/saola/domains/land/migrations --depends-on 0002
#   (a pack's first revision starts its own branch; later ones: --head land@head)
set -euo pipefail
cd "$(dirname "$0")/.."
rev="$1"; msg="$2"; shift 2
branch=""; path=""; depends=""; head="head"
while [ $# -gt 0 ]; do
  case "$1" in
    --branch) branch="$2"; shift 2;;
    --path) path="$2"; shift 2;;
    --depends-on) depends="$2"; shift 2;;
    --head) head="$2"; shift 2;;
    *) echo "unknown option $1"; exit 2;;
  esac
done
tmp=$(mktemp -d)
url="sqlite:///$tmp/m.db"
.venv/bin/python - "$url" "$rev" "$msg" "$branch" "$path" "$depends" "$head" <<'PY'
import sys
from alembic import command
from saola.db.migrate import alembic_config
url, rev, msg, branch, path, depends, head = sys.argv[1:]
cfg = alembic_config(url)
command.upgrade(cfg, "heads")
kw = {"rev_id": rev, "message": msg, "autogenerate": True}
if branch:
    kw.update(branch_label=branch, version_path=path, head="base", splice=True)
    if depends:
        kw["depends_on"] = depends
else:
    kw["head"] = head
command.revision(cfg, **kw)
PY
rm -rf "$tmp"
f=$(ls src/saola/db/migrations/versions/"$rev"_*.py ${path:+$path/${rev}_*.py} 2>/dev/null | head -1)
# Alembic renders JSONB's text type unqualified; qualify it so the file imports cleanly.
sed -i 's/astext_type=Text()/astext_type=sa.Text()/g' "$f"
.venv/bin/ruff format -q "$f" && .venv/bin/ruff check -q --fix "$f" || true
echo "$f"
