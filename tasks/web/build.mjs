// Bundles the demo chat page into one directory the gateway serves (docs/web.md):
//   node build.mjs --outdir DIR [--api /api/chat] [--metafile FILE]
// DIR gets index.html, app.js (src/main.js and the `ai` package, bundled and minified by
// esbuild) and app.css. Nothing is fetched at run time from anywhere but the page's own origin.
import { build } from 'esbuild';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    outdir: { type: 'string' },
    api: { type: 'string', default: '/api/chat' },
    metafile: { type: 'string' },
  },
});
if (!values.outdir) {
  console.error('usage: node build.mjs --outdir DIR [--api /api/chat] [--metafile FILE]');
  process.exit(2);
}
if (!/^\/[A-Za-z0-9._~\/-]*$/.test(values.api)) {
  console.error(`build.mjs: --api must be an absolute path such as /api/chat, not ${values.api}`);
  process.exit(2);
}
const outdir = resolve(values.outdir);
await mkdir(outdir, { recursive: true });

// Each file is written next to its final name and renamed over it, so a server that serves
// the directory during a rebuild never sends half a file.
async function put(name, contents) {
  const temporary = join(outdir, `.${name}.tmp`);
  await writeFile(temporary, contents);
  await rename(temporary, join(outdir, name));
}

const result = await build({
  absWorkingDir: here, // metafile paths are relative to the page's directory
  entryPoints: [join(here, 'src/main.js')],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome110', 'firefox115', 'safari16'],
  minify: true,
  legalComments: 'none',
  write: false,
  outfile: join(outdir, 'app.js'),
  metafile: true,
  logLevel: 'warning',
});
for (const file of result.outputFiles) await put('app.js', file.contents);

const html = await readFile(join(here, 'index.html'), 'utf8');
const meta = '<meta name="baton-api" content="/api/chat">';
if (!html.includes(meta)) throw new Error(`index.html lost its ${meta}`);
await put('index.html', html.replace(meta, `<meta name="baton-api" content="${values.api}">`));
await put('app.css', await readFile(join(here, 'app.css')));
if (values.metafile) {
  await mkdir(dirname(resolve(values.metafile)), { recursive: true });
  await writeFile(values.metafile, JSON.stringify(result.metafile, null, 1));
}
const bytes = result.outputFiles.reduce((sum, file) => sum + file.contents.length, 0);
console.log(`web: ${outdir} (app.js ${Math.round(bytes / 1024)} KiB)`);
