# shellcheck shell=bash
# limits.sh: the per-input limits of every harness, sourced by tests/fuzz/run.sh and
# benchmarks/fuzz.sh. An input over its time or memory limit is a finding. -max_len caps the
# inputs libFuzzer makes: the tokenizer harnesses train, load or encode in time proportional to
# their input, and a longer input reaches no code a shorter one does not (a trained vocabulary of
# 300 from 4 KiB of text; GPT-2-sized chunks well past the 128-byte switch to the heap merge).
fuzz_flags() {
  local max_len=65536 extra=""
  case "$1" in
    fuzz_tok_train) max_len=4096 ;;
    fuzz_tok_encode) max_len=8192 ;;
    fuzz_tok_files) max_len=16384 ;;
    fuzz_report) extra=" -close_fd_mask=3" ;; # the commands' own messages, once per input
  esac
  echo "-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=1 -max_len=$max_len$extra"
}
