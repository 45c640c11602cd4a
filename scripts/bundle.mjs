// Bundles the CLI into dist/cli/ after tsc, so `portolan` starts from a few files instead of about
// 150 modules (its own and yaml's). The library (dist/src) stays as tsc wrote it.
//
// Each command is one self-contained file (dist/cli/<command>.js), loaded by dist/cli/main.js when it
// is named: a command starts from three files (main.js, errors.js, its own) rather than the twenty
// or so shared chunks that code splitting makes of the same code, which the ES module loader resolves,
// reads, compiles and links one by one (about 10 ms of every command's start on a 2-core machine;
// bytes cost less than files). Code the commands share is copied into each, so a module's state is
// never shared between two commands; one process runs one command. The one module whose identity
// crosses files is src/errors.ts (main.js's `instanceof PortolanError` sees the errors a command
// throws), so it is a file of its own that every bundle imports. The sweep's worker thread and the
// SQLite store's checkpoint thread are entries too, beside the files that start them
// (src/probe/sweep.ts, src/server/db.ts).
import { copyFileSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'cli');
const compiled = join(root, 'dist', 'src');
const mainEntry = join(compiled, 'cli', 'main.js');
const errorsModule = join(compiled, 'errors.js');
rmSync(outdir, { recursive: true, force: true });

// The commands main.js loads by name: its dynamic imports of ./NAME.js.
const mainSource = readFileSync(mainEntry, 'utf8');
const commands = [...mainSource.matchAll(/import\('\.\/([a-z-]+)\.js'\)/g)].map((m) => m[1]);
if (commands.length === 0) throw new Error(`no command imports found in ${mainEntry}`);

/** Keeps errors.js one module for every file, and main.js's command imports as imports of files. */
const linkFiles = {
  name: 'portolan-files',
  setup(b) {
    b.onResolve({ filter: /errors\.js$/ }, (args) => {
      if (args.importer === errorsModule || join(args.resolveDir, args.path) !== errorsModule)
        return undefined;
      return { path: './errors.js', external: true };
    });
    // A `require('yaml')` is a load at first use (src/util/yaml.ts): it loads dist/cli/yaml.cjs,
    // so that a command whose input never needs yaml does not compile its 250 KB either.
    b.onResolve({ filter: /^yaml$/ }, (args) =>
      args.kind === 'require-call' ? { path: './yaml.cjs', external: true } : undefined,
    );
    // js-yaml the same way (dist/cli/js-yaml.cjs): only an inventory the line reader declines needs it.
    b.onResolve({ filter: /^js-yaml$/ }, (args) =>
      args.kind === 'require-call' ? { path: './js-yaml.cjs', external: true } : undefined,
    );
    b.onResolve({ filter: /^\.\/[a-z-]+\.js$/ }, (args) =>
      args.importer === mainEntry && args.kind === 'dynamic-import'
        ? { path: args.path, external: true }
        : undefined,
    );
  },
};

await build({
  entryPoints: [
    mainEntry,
    errorsModule,
    ...commands.map((c) => join(compiled, 'cli', `${c}.js`)),
    join(compiled, 'probe', 'tcp-worker.js'),
    join(compiled, 'server', 'checkpoint-worker.js'),
  ],
  outdir,
  bundle: true,
  splitting: false,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  entryNames: '[name]',
  // The maps point into dist/src (shipped beside), so they need not carry the sources again.
  sourcemap: true,
  sourcesContent: false,
  logLevel: 'warning',
  plugins: [linkFiles],
  // Native addons (better-sqlite3) and optional native drivers are loaded from node_modules.
  external: ['better-sqlite3', 'pg-native'],
  // yaml is CommonJS and requires node built-ins; an ES module bundle needs a require for that.
  banner: {
    js: "import { createRequire as __portolanRequire } from 'node:module';\nconst require = __portolanRequire(import.meta.url);",
  },
});
// yaml and js-yaml (CommonJS) as files of their own, for the requires above.
for (const pkg of ['yaml', 'js-yaml'])
  await build({
    stdin: { contents: `module.exports = require('${pkg}');`, resolveDir: root, loader: 'js' },
    outfile: join(outdir, `${pkg}.cjs`),
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    sourcemap: true,
    sourcesContent: false,
    logLevel: 'warning',
  });
// Every file main.js may load is there, and nothing else was written.
const expected = new Set(
  ['main', 'errors', ...commands, 'tcp-worker', 'checkpoint-worker'].map((n) => `${n}.js`),
);
const written = readdirSync(outdir).filter((f) => f.endsWith('.js'));
if (written.length !== expected.size || !written.every((f) => expected.has(f)))
  throw new Error(`dist/cli has ${written.join(', ')}; expected ${[...expected].join(', ')}`);

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
