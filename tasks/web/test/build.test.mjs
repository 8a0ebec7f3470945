// The page's bundle (build.mjs): three files, the pinned `ai` inside, nothing to fetch from
// elsewhere. With BATON_WEB_DIR set (ctest does), the page the build tree serves is current.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

function build(...args) {
  return spawnSync(process.execPath, [join(root, 'build.mjs'), ...args], { encoding: 'utf8' });
}

const out = mkdtempSync(join(tmpdir(), 'baton-web-'));
const meta = join(out, 'meta.json');
const built = build('--outdir', join(out, 'web'), '--metafile', meta);
after(() => rmSync(out, { recursive: true, force: true }));

test('the bundle is index.html, app.js and app.css', () => {
  assert.equal(built.status, 0, built.stderr);
  assert.deepEqual(readdirSync(join(out, 'web')).sort(), ['app.css', 'app.js', 'index.html']);
});

test('the page loads nothing but its own two files', () => {
  const html = readFileSync(join(out, 'web', 'index.html'), 'utf8');
  assert.match(html, /<script type="module" src="app.js"><\/script>/);
  assert.match(html, /<link rel="stylesheet" href="app.css">/);
  const sources = [...html.matchAll(/\b(?:src|href)="([^"]*)"/g)].map((m) => m[1]);
  assert.deepEqual(sources, ['data:,', 'app.css', 'app.js', './']);
  const css = readFileSync(join(out, 'web', 'app.css'), 'utf8');
  assert.doesNotMatch(css, /@import|url\(/);
  const { outputs } = JSON.parse(readFileSync(meta, 'utf8'));
  const [app] = Object.values(outputs);
  assert.deepEqual(app.imports, [], 'app.js imports no module at run time');
});

test('app.js holds the pinned ai 6.0.333 and our sources', () => {
  const { inputs } = JSON.parse(readFileSync(meta, 'utf8'));
  const files = Object.keys(inputs);
  assert.ok(files.includes('node_modules/ai/dist/index.mjs'), files.join('\n'));
  assert.ok(files.includes('src/main.js'));
  const ai = JSON.parse(readFileSync(join(root, 'node_modules', 'ai', 'package.json'), 'utf8'));
  assert.equal(ai.version, '6.0.333');
  const pinned = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  assert.equal(pinned.dependencies.ai, '6.0.333');
});

test('--api names the gateway route in the page; a bad one is refused', () => {
  const dir = join(out, 'api');
  const result = build('--outdir', dir, '--api', '/v2/chat');
  assert.equal(result.status, 0, result.stderr);
  assert.match(readFileSync(join(dir, 'index.html'), 'utf8'), /<meta name="baton-api" content="\/v2\/chat">/);
  const bad = build('--outdir', dir, '--api', '"><script>');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--api must be an absolute path/);
  assert.equal(build().status, 2);
});

test('the page in the build tree is this build (BATON_WEB_DIR)', { skip: !process.env.BATON_WEB_DIR }, () => {
  for (const name of ['index.html', 'app.js', 'app.css']) {
    const fresh = readFileSync(join(out, 'web', name));
    const served = readFileSync(join(process.env.BATON_WEB_DIR, name));
    assert.ok(fresh.equals(served), `${process.env.BATON_WEB_DIR}/${name} is not what build.mjs makes now`);
  }
});
