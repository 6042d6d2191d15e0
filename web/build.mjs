// Build the standalone page into dist/ (what `pydeploy dashboard` serves): esbuild bundles
// standalone/main.tsx with React, supabase-js and uPlot (and uPlot's CSS into main.css); the
// Tailwind CLI compiles the classes used in src/ and standalone/ into tailwind.css.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "dist");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [join(here, "standalone", "main.tsx")],
  outfile: join(out, "main.js"),
  bundle: true,
  format: "esm",
  minify: true,
  sourcemap: true,
  target: ["es2022"],
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
  legalComments: "linked",
});

execFileSync(
  join(here, "node_modules", ".bin", "tailwindcss"),
  ["-i", join(here, "standalone", "tailwind.css"), "-o", join(out, "tailwind.css"), "--minify"],
  { stdio: ["ignore", "ignore", "inherit"], cwd: here },
);
copyFileSync(join(here, "standalone", "index.html"), join(out, "index.html"));
process.stdout.write(`built ${out}\n`);
