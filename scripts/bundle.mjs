// Bundles the CLI into dist/cli/ after tsc, so `portolan` starts from a few files instead of about
// 150 modules (its own and yaml's): every command starts about 0.1 s sooner. The library
// (dist/src) stays as tsc wrote it. Commands load lazily (one chunk each), and the sweep's worker
// thread and the SQLite store's checkpoint thread are entries of their own, beside the chunks that
// start them (src/probe/sweep.ts, src/server/db.ts).
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'cli');
rmSync(outdir, { recursive: true, force: true });
await build({
  entryPoints: [
    join(root, 'dist/src/cli/main.js'),
    join(root, 'dist/src/probe/tcp-worker.js'),
    join(root, 'dist/src/server/checkpoint-worker.js'),
  ],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  entryNames: '[name]',
  chunkNames: 'chunk-[hash]',
  sourcemap: true,
  logLevel: 'warning',
  // Native addons (better-sqlite3) and optional native drivers are loaded from node_modules.
  external: ['better-sqlite3', 'pg-native'],
  // yaml is CommonJS and requires node built-ins; an ES module bundle needs a require for that.
  banner: {
    js: "import { createRequire as __portolanRequire } from 'node:module';\nconst require = __portolanRequire(import.meta.url);",
  },
});

// The console (web/): one browser bundle with its CSS, served by `portolan serve`; no CDN.
const webOut = join(root, 'dist', 'web');
rmSync(webOut, { recursive: true, force: true });
await build({
  entryPoints: [join(root, 'web/app.js')],
  outdir: webOut,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  logLevel: 'warning',
});
copyFileSync(join(root, 'web/index.html'), join(webOut, 'index.html'));
const css = [readFileSync(join(webOut, 'app.css'), 'utf8'), readFileSync(join(root, 'web/app.css'), 'utf8')];
writeFileSync(join(webOut, 'app.css'), css.join('\n'));
