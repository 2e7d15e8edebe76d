#!/usr/bin/env bash
# setup_npm.sh: what the tokenizer tests need from npm, installed into the user cache
# ($TESSERA_HOME, default ~/.cache/tessera), never into the repository:
#   npm/node_modules/js-tiktoken   the independent GPT-2 encoder the tests compare against
# The GPT-2 vocabulary itself is fetched by `tessera tokenizer fetch gpt2` (the tests run it when
# it is missing). Needs node and npm: setup.sh installs Debian's npm when `npm` is missing.
set -euo pipefail
cache=${TESSERA_HOME:-$HOME/.cache/tessera}
version=1.0.21
if [ -f "$cache/npm/node_modules/js-tiktoken/package.json" ] &&
   grep -q "\"version\": \"$version\"" "$cache/npm/node_modules/js-tiktoken/package.json"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "setup_npm: npm is missing (apt-get install npm)" >&2
  exit 2
fi
echo "setup_npm: npm install js-tiktoken@$version -> $cache/npm"
mkdir -p "$cache/npm"
npm install --prefix "$cache/npm" --no-save --no-audit --no-fund --loglevel=error \
  "js-tiktoken@$version"
