// Validate an AsyncAPI document with AsyncAPI's own parser (@asyncapi/parser),
// resolving the JSON Schema files it references: `node validate.mjs FILE`.
// Prints each diagnostic as JSON; exits 1 on any error or warning.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { Parser, fromFile } from "@asyncapi/parser";

const file = resolve(process.argv[2]);
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, file).parse();
const relevant = diagnostics.filter((d) => d.severity <= 1); // 0 error, 1 warning
for (const d of diagnostics) {
  console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path }));
}
if (!document || relevant.length) process.exit(1);
const channels = document.channels().all().map((c) => c.address());
console.log(JSON.stringify({ valid: true, channels }));
