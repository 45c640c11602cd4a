// Compiles the JSON schemas into standalone validators at build time (ajv's standalone code), so
// the CLI never loads or runs ajv's compiler on start-up. Each file records the SHA-256 of the
// schema it was made from; src/util/schema.ts uses it only while that still matches, and compiles
// the schema itself otherwise (an edited schema before the next build). Run after tsc.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Ajv } from 'ajv';
import standalone from 'ajv/dist/standalone/index.js';
import { AJV_OPTIONS, SCHEMAS, validatorPath } from '../dist/src/util/schema.js';

const standaloneCode = standalone.default ?? standalone;
for (const [name, file] of Object.entries(SCHEMAS)) {
  const text = readFileSync(file);
  const ajv = new Ajv({ ...AJV_OPTIONS, code: { source: true } });
  const code = standaloneCode(ajv, ajv.compile(JSON.parse(text.toString('utf8'))));
  const sha256 = createHash('sha256').update(text).digest('hex');
  const out = validatorPath(name);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${code}\nmodule.exports.sha256 = ${JSON.stringify(sha256)};\n`);
}
