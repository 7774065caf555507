#!/usr/bin/env bash
# Builds the library's documentation with DocC: the Training module's symbols, with the
# guides in docs/ as articles (copied into the catalog for the build, then removed).
# Usage: scripts/documentation.sh [output directory, default .build/documentation]
set -euo pipefail
cd "$(dirname "$0")/.."
OUTPUT=${1:-.build/documentation}
CATALOG=Sources/Training/Training.docc
ARTICLES=("$CATALOG/Training-Guide.md" "$CATALOG/Planning-Guide.md" "$CATALOG/Errors-Guide.md")
trap 'rm -f "${ARTICLES[@]}"' EXIT
cp docs/training.md "${ARTICLES[0]}"
cp docs/planning.md "${ARTICLES[1]}"
cp docs/errors.md "${ARTICLES[2]}"
swift package --allow-writing-to-directory "$OUTPUT" generate-documentation --target Training \
  --output-path "$OUTPUT" --disable-indexing
echo "documentation written to $OUTPUT"
