#!/bin/sh
# One command from a fresh checkout to a running quick start: virtualenv, install, database,
# two demo agent keys, a finance manager who approves large payments, and the gateway on
# http://127.0.0.1:8787/mcp.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/examples/quickstart"
cd "$root"

if [ ! -x .venv/bin/python ]; then
    echo "==> creating virtualenv .venv"
    python3 -m venv .venv
fi
echo "==> installing the gateway into .venv"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .

config="$here/gateway.toml"
keys="$here/.state/keys.env"
mkdir -p "$here/.state"
.venv/bin/gateway migrate --config "$config"
if [ ! -s "$keys" ]; then
    echo "==> creating demo agent keys"
    sales=$(.venv/bin/gateway keys create --config "$config" --agent sales-bot --role sales \
        --description "quick start" --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["key"])')
    finance=$(.venv/bin/gateway keys create --config "$config" --agent finance-bot --role finance \
        --description "quick start" --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["key"])')
    echo "==> creating the demo finance manager (approves payments over 1,000)"
    manager=$(.venv/bin/gateway users create maria --role finance-managers --role approver --config "$config" \
        | tail -n 1)
    echo "==> creating the demo console administrator"
    admin=$(.venv/bin/gateway users create admin --role admin --config "$config" | tail -n 1)
    umask 077
    printf 'SALES_KEY=%s\nFINANCE_KEY=%s\nMANAGER_KEY=%s\nADMIN_KEY=%s\n' "$sales" "$finance" "$manager" "$admin" \
        > "$keys"
fi
. "$keys"
cat <<MSG

Gateway starting on http://127.0.0.1:8787/mcp
In another terminal, run the scripted agent as the sales agent or the finance agent:

  .venv/bin/python examples/quickstart/agent.py --key $SALES_KEY
  .venv/bin/python examples/quickstart/agent.py --key $FINANCE_KEY

The finance agent's payment of 3,400 waits for a finance manager. Approve it as maria, then run
the finance agent again: repeating the identical call collects the payment, made once.

  .venv/bin/gateway approvals list --config examples/quickstart/gateway.toml
  .venv/bin/gateway approvals approve <ID> --config examples/quickstart/gateway.toml --user-key $MANAGER_KEY

Or decide it in the web console, http://127.0.0.1:8787/ui: sign in as maria with her key,
$MANAGER_KEY
(the administrator, who also manages keys and users there, signs in with $ADMIN_KEY).

(The keys are kept in examples/quickstart/.state/keys.env.) Stop the gateway with Ctrl-C.

http://127.0.0.1:8787/readyz answers its status to anyone; its details (backends, policies) and
/metrics need an operator token: set [server] ops_token in examples/quickstart/gateway.toml and
send it as 'Authorization: Bearer <token>'.

MSG
exec .venv/bin/gateway serve --config "$config"
