// tiktoken_oracle.js FILE: prints the GPT-2 token ids of FILE (UTF-8) as js-tiktoken encodes
// them, on one line. An independent encoder with its own copy of the ranks: the oracle for
// tests/data. `<|endoftext|>` in the text is ordinary text (no special tokens allowed or
// disallowed), as in Tessera. js-tiktoken is installed by scripts/setup_npm.sh.
const { getEncoding } = require("js-tiktoken");
const fs = require("fs");
const enc = getEncoding("gpt2");
const text = fs.readFileSync(process.argv[2], "utf8");
process.stdout.write(enc.encode(text, [], []).join(" ") + "\n");
