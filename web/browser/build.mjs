// Builds dist/cocoon.js, the library as one ES module, from src/ and the packages of
// package-lock.json (npm ci first). The output is reproducible: the same sources and
// lock file give the same bytes. `node build.mjs --check` builds into memory and fails
// if dist/cocoon.js differs (make browser-check, which make test runs).
import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";

const out = new URL("./dist/cocoon.js", import.meta.url);
const result = await build({
  entryPoints: [new URL("./src/cocoon.mjs", import.meta.url).pathname],
  absWorkingDir: new URL(".", import.meta.url).pathname,
  bundle: true,
  format: "esm",
  platform: "neutral",
  mainFields: ["module", "main"],
  target: "es2022",
  minify: true,
  legalComments: "eof",
  write: false,
  logLevel: "warning",
});
const bytes = result.outputFiles[0].contents;
if (process.argv.includes("--check")) {
  let committed = null;
  try {
    committed = readFileSync(out);
  } catch {
    // missing: fails below
  }
  if (!committed || Buffer.compare(committed, Buffer.from(bytes)) !== 0) {
    console.error("web/browser/dist/cocoon.js is not what its sources build to: run `make browser` and commit it");
    process.exit(1);
  }
} else {
  writeFileSync(out, bytes);
  console.log(`dist/cocoon.js: ${bytes.length} bytes`);
}
