// Bundles src/ into one minified IIFE, socket.io-client included: `npm run build [-- --outfile PATH]`.
import { build } from "esbuild";
import { mkdirSync, readFileSync, renameSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { gzipSync } from "node:zlib";

const flag = process.argv.indexOf("--outfile");
const outfile = resolve(flag > 0 ? process.argv[flag + 1] : "dist/widget.js");
// Written beside the target and renamed: Nginx never serves a half-written file.
const partial = `${outfile}.partial`;
mkdirSync(dirname(outfile), { recursive: true });

await build({
  entryPoints: ["src/index.ts"],
  outfile: partial,
  bundle: true,
  minify: true,
  format: "iife",
  platform: "browser",
  target: ["es2020", "chrome87", "edge88", "firefox78", "safari15"],
  legalComments: "eof",
  logLevel: "warning",
});
renameSync(partial, outfile);

const code = readFileSync(outfile);
console.log(`${outfile}: ${code.length} bytes, ${gzipSync(code, { level: 9 }).length} gzipped`);
