// Builds the web client into dist/: index.html and content-hashed assets.
//
//   node build.mjs            one minified build (what `npm run build` runs)
//   node build.mjs --watch    rebuild on every change, unminified (run a plain build before committing)
//
// The SDK is compiled from source: `@parlor/client` resolves to
// ../clients/typescript/src/index.ts (run `npm run gen` there first, for its protobuf
// types). `@bufbuild/protobuf` resolves from ours, the SDK's sources included, so the
// bundle holds exactly one copy of the protobuf runtime.
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, "dist");
const sdkDir = path.resolve(here, "../clients/typescript");
const sdkSrc = path.join(sdkDir, "src");
const watch = process.argv.includes("--watch");

const sdkEntry = path.join(sdkSrc, "index.ts");
if (!existsSync(sdkEntry)) {
  console.error(`build: the SDK is missing (${path.relative(here, sdkEntry)})`);
  process.exit(1);
}
if (!existsSync(path.join(sdkSrc, "gen"))) {
  console.error("build: the SDK's protobuf types are missing: run `npm ci && npm run gen` in clients/typescript");
  process.exit(1);
}

/** Resolves the SDK to its source, and the protobuf runtime to one copy. */
const resolvePlugin = {
  name: "parlor-resolve",
  setup(build) {
    build.onResolve({ filter: /^@parlor\/client(\/.*)?$/ }, (args) => {
      const sub = args.path.slice("@parlor/client".length);
      if (!sub) return { path: sdkEntry };
      const base = path.join(sdkSrc, sub.replace(/\.js$/, ""));
      for (const p of [base, `${base}.ts`, path.join(base, "index.ts")]) {
        if (existsSync(p) && !p.endsWith("/")) return { path: p };
      }
      return { errors: [{ text: `cannot resolve ${args.path} in the SDK` }] };
    });
  },
};

const hash8 = (buf) => createHash("sha256").update(buf).digest("hex").slice(0, 8);

/** Renames an output to carry the hash of its own bytes, so that the same sources always
 * give the same names (esbuild's [hash] was seen to differ between identical outputs). */
function hashed(rel) {
  const from = path.join(dist, rel);
  const ext = path.extname(rel);
  const to = `${rel.slice(0, -ext.length)}-${hash8(readFileSync(from))}${ext}`;
  renameSync(from, path.join(dist, to));
  return to;
}

/** Writes dist/index.html naming the hashed outputs of `metafile`. */
function writeHtml(metafile) {
  const outs = Object.keys(metafile.outputs).map((p) => path.relative(dist, path.resolve(here, p)));
  const js = outs.find((p) => p.endsWith(".js")) && hashed(outs.find((p) => p.endsWith(".js")));
  const css = outs.find((p) => p.endsWith(".css")) && hashed(outs.find((p) => p.endsWith(".css")));
  if (!js || !css) throw new Error(`build: expected one .js and one .css output, got ${outs.join(", ")}`);
  const icon = readFileSync(path.join(here, "src", "favicon.svg"));
  const iconName = `assets/favicon-${hash8(icon)}.svg`;
  writeFileSync(path.join(dist, iconName), icon);
  const html = readFileSync(path.join(here, "src", "index.html"), "utf8")
    .replaceAll("%APP_JS%", js)
    .replaceAll("%APP_CSS%", css)
    .replaceAll("%FAVICON%", iconName);
  writeFileSync(path.join(dist, "index.html"), html);
  return [js, css, iconName];
}

/** The files the last build wrote (the html plugin's onEnd sets it). */
let written = [];

rmSync(dist, { recursive: true, force: true });
mkdirSync(path.join(dist, "assets"), { recursive: true });

const options = {
  absWorkingDir: here,
  entryPoints: { app: "src/main.ts" },
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  // Whitespace and syntax only: esbuild's identifier renaming was seen to give different
  // names from one build to the next, and CI compares the build with the committed one.
  minifyWhitespace: !watch,
  minifySyntax: !watch,
  // Never a source map: dist/ is committed and embedded in the pod.
  sourcemap: false,
  legalComments: "none",
  // One copy of the protobuf runtime: an aliased import resolves from this folder, the
  // SDK's sources included. (A plugin resolving it asynchronously made the minified
  // names differ from one build to the next.)
  alias: { "@bufbuild/protobuf": "@bufbuild/protobuf" },
  outdir: "dist",
  // Named by their content hash afterwards (hashed()).
  entryNames: "assets/[name]",
  assetNames: "assets/[name]",
  metafile: true,
  logLevel: "info",
  plugins: [
    resolvePlugin,
    {
      name: "parlor-html",
      setup(build) {
        build.onStart(() => {
          // Stale hashed files from an earlier build in watch mode.
          if (watch) {
            rmSync(path.join(dist, "assets"), { recursive: true, force: true });
            mkdirSync(path.join(dist, "assets"), { recursive: true });
          }
        });
        build.onEnd((result) => {
          if (result.errors.length === 0 && result.metafile) {
            written = writeHtml(result.metafile);
            if (watch) console.log(`build: dist/index.html -> ${written.join(", ")}`);
          }
        });
      },
    },
  ],
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
  console.log("build: watching src/ (Ctrl-C to stop)");
} else {
  await esbuild.build(options);
  const files = ["index.html", ...written];
  for (const f of files) {
    const size = readFileSync(path.join(dist, f)).length;
    console.log(`  dist/${f}  ${(size / 1024).toFixed(1)} KiB`);
  }
}
