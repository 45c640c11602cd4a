import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { type Document, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import { InputError, type Location } from '../errors.js';

/** Inventories and catalogs are small; anything larger is a mistake or an attack. */
export const MAX_YAML_BYTES = 4 * 1024 * 1024;
/** yaml's guard against alias bombs ("billion laughs"): more alias expansions than this is refused. */
export const MAX_ALIAS_COUNT = 200;

export type PathPart = string | number;

export interface LoadedYaml {
  file: string;
  data: unknown;
  /** SHA-256 of the file's bytes. */
  sha256: string;
  /** Where a key path is in the file; the nearest existing ancestor when the path itself is absent. */
  locate(path: readonly PathPart[], at?: 'key' | 'value'): Location;
}

/** Reads a YAML file into plain data, turning every way it can be bad into one located InputError. */
export function loadYamlFile(file: string, what = 'file'): LoadedYaml {
  let size: number;
  try {
    size = statSync(file).size;
  } catch (err) {
    throw new InputError(`cannot read the ${what}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { file }, { cause: err });
  }
  if (size > MAX_YAML_BYTES)
    throw new InputError(`the ${what} is ${size} bytes; the limit is ${MAX_YAML_BYTES} bytes (4 MiB)`, { file });
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new InputError(`cannot read the ${what}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { file }, { cause: err });
  }
  return parseYamlText(bytes, file, what);
}

export function parseYamlText(bytes: Uint8Array, file: string, what = 'file'): LoadedYaml {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    // The lenient decoder marks the first bad sequence with U+FFFD; count lines up to it.
    const lenient = new TextDecoder('utf-8').decode(bytes);
    const before = lenient.slice(0, Math.max(0, lenient.indexOf('\uFFFD')));
    const line = before.split('\n').length;
    const column = before.length - before.lastIndexOf('\n');
    throw new InputError(`the ${what} is not valid UTF-8 text (re-save it as UTF-8)`, { file, line, column });
  }
  if (text.includes('\u0000')) throw new InputError(`the ${what} contains a NUL byte (expected YAML text)`, { file });
  if (text.trim() === '' || /^(\s*(#.*)?\n?)*$/.test(text))
    throw new InputError(`the ${what} is empty (expected a YAML mapping)`, { file, line: 1, column: 1 });
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true, version: '1.2' });
  const at = (offset: number): { line: number; column: number } => {
    const p = lineCounter.linePos(offset);
    return { line: p.line, column: p.col };
  };
  const err = doc.errors[0];
  if (err) {
    const detail = err.code === 'DUPLICATE_KEY' ? 'duplicate key (each key may appear once in a mapping)' : yamlMessage(err.message);
    throw new InputError(`YAML: ${detail}`, { file, ...at(err.pos[0]) });
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    if (e instanceof ReferenceError && /alias/i.test(e.message))
      throw new InputError(`YAML: too many alias expansions (more than ${MAX_ALIAS_COUNT}); refused as a possible alias bomb`, { file });
    throw new InputError(`YAML: ${(e as Error).message}`, { file }, { cause: e });
  }
  const locate = (path: readonly PathPart[], which: 'key' | 'value' = 'value'): Location => {
    const node = nearestNode(doc, path, which);
    const loc: Location = { file, path: formatPath(path) };
    if (node?.range) Object.assign(loc, at(node.range[0]));
    return loc;
  };
  return { file, data, locate, sha256: createHash('sha256').update(bytes).digest('hex') };
}

function yamlMessage(message: string): string {
  // yaml appends " at line L, column C:" and a code frame; the location is printed by us.
  return message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '').trim();
}

function nearestNode(doc: Document, path: readonly PathPart[], which: 'key' | 'value'): Node | undefined {
  let node: unknown = doc.contents;
  let keyNode: unknown;
  for (const part of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => String(isScalar(p.key) ? p.key.value : p.key) === String(part));
      if (!pair) return node as Node;
      keyNode = pair.key;
      node = pair.value ?? pair.key;
    } else if (isSeq(node) && typeof part === 'number') {
      const item = node.items[part];
      if (!item) return node as Node;
      keyNode = undefined;
      node = item;
    } else return node as Node;
  }
  return (which === 'key' && keyNode ? keyNode : node) as Node;
}

/** `hosts.esx-a.roles[0]`; keys that are not plain words are quoted. */
export function formatPath(path: readonly PathPart[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (/^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/.test(part) && !part.includes('.')) out += out ? `.${part}` : part;
    else out += `[${JSON.stringify(part)}]`;
  }
  return out;
}
