#!/usr/bin/env bash
# Verifies the Dockerfile's pinned base image against the registry (ADR-003).
#
#   scripts/check-base-digest.sh verify   # every FROM pins the same tag@digest, the
#                                         # digest exists in that repository as a
#                                         # multi-arch index with linux/amd64 and
#                                         # linux/arm64, and each is Python 3.12
#   scripts/check-base-digest.sh stale    # fails when the tag now points elsewhere
#
# Needs `docker buildx` and `jq` (both on GitHub's ubuntu runners) and registry
# access; it never writes a digest anywhere: refreshing goes through Dependabot or
# the manual procedure in the ADR.
set -euo pipefail

mode="${1:-verify}"
dockerfile="${DOCKERFILE:-Dockerfile}"
summary="${GITHUB_STEP_SUMMARY:-/dev/null}"
platforms=(linux/amd64 linux/arm64)

mapfile -t refs < <(awk 'toupper($1) == "FROM" { print $2 }' "$dockerfile" | sort -u)
if [ "${#refs[@]}" -ne 1 ]; then
  echo "::error file=$dockerfile::expected one base reference in every FROM, found: ${refs[*]}"
  exit 1
fi
ref="${refs[0]}"
if [[ ! "$ref" =~ ^([^@:]+):([^@]+)@(sha256:[0-9a-f]{64})$ ]]; then
  echo "::error file=$dockerfile::base '$ref' is not name:tag@sha256:<digest>"
  exit 1
fi
name="${BASH_REMATCH[1]}"
tag="${BASH_REMATCH[2]}"
pinned="${BASH_REMATCH[3]}"

case "$mode" in
  verify)
    # Fails if the digest does not exist in this repository.
    manifest="$(docker buildx imagetools inspect "$name@$pinned" --format '{{json .Manifest}}')"
    media="$(jq -r '.mediaType' <<<"$manifest")"
    case "$media" in
      *manifest.list*|*image.index*) ;;
      *) echo "::error::$name@$pinned is a single-platform manifest ($media)"; exit 1 ;;
    esac
    # The image configs, keyed by platform for an index.
    images="$(docker buildx imagetools inspect "$name@$pinned" --format '{{json .Image}}')"
    for platform in "${platforms[@]}"; do
      os="${platform%/*}"
      arch="${platform#*/}"
      if ! jq -e --arg os "$os" --arg arch "$arch" \
        '.manifests[] | select(.platform.os == $os and .platform.architecture == $arch)' \
        <<<"$manifest" >/dev/null; then
        echo "::error::$name@$pinned has no $platform image"
        exit 1
      fi
      python="$(jq -r --arg p "$platform" '(.[$p] // .).config.Env[]?
        | select(startswith("PYTHON_VERSION=")) | sub("PYTHON_VERSION="; "")' <<<"$images")"
      if [[ "$python" != 3.12.* ]]; then
        echo "::error::$name@$pinned ($platform) runs Python '$python', not 3.12"
        exit 1
      fi
      echo "ok: $name:$tag@$pinned has $platform (Python $python)"
    done
    echo "base image verified: $name:$tag@$pinned" >>"$summary"
    ;;
  stale)
    current="$(docker buildx imagetools inspect "$name:$tag" --format '{{json .Manifest}}' \
      | jq -r '.digest')"
    if [ "$current" = "$pinned" ]; then
      echo "ok: $name:$tag still points to the pinned $pinned"
      echo "base image current: $name:$tag@$pinned" >>"$summary"
      exit 0
    fi
    message="$name:$tag now points to $current; the Dockerfile pins $pinned. Refresh it through Dependabot or the procedure in docs/adr/ADR-003-container-base-image.md (never type a digest in)."
    echo "::error file=$dockerfile::stale base image: $message"
    {
      echo "### Stale base image digest"
      echo
      echo "$message"
    } >>"$summary"
    exit 1
    ;;
  *)
    echo "usage: $0 verify|stale" >&2
    exit 2
    ;;
esac
