#!/bin/sh
# The trainer image's entry point: `esper train ARGS`, or the same training across
# ESPER_NPROC processes under torchrun. exec, so that SIGTERM from `docker compose stop`
# reaches esper, or torchrun, which passes it on to its workers.
set -eu

nproc="${ESPER_NPROC-1}"
# Zero-padded counts are refused too, so that "1" is the only spelling of one process.
case "$nproc" in
    '' | *[!0-9]* | 0*)
        printf "trainer-entrypoint: ESPER_NPROC must be a positive integer, got '%s'\n" \
            "$nproc" >&2
        exit 2
        ;;
esac

if [ "$nproc" = 1 ]; then
    exec esper train "$@"
fi
exec torchrun --standalone --nproc-per-node "$nproc" -m app train "$@"
