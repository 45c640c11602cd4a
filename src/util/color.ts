/** ANSI colour only on a TTY and only when NO_COLOR is unset (https://no-color.org); FORCE_COLOR overrides the TTY test. */
export function colorEnabled(stream: NodeJS.WriteStream = process.stdout): boolean {
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false;
  // FORCE_COLOR=0 (or false) turns colour off, as in Node and the npm ecosystem; any other value on.
  const force = process.env.FORCE_COLOR;
  if (force !== undefined && force !== '') return !['0', 'false'].includes(force.toLowerCase());
  return Boolean(stream.isTTY);
}

export type Paint = (text: string) => string;
const code =
  (open: number, close: number): Paint =>
  (t) =>
    `\u001b[${open}m${t}\u001b[${close}m`;
const plain: Paint = (t) => t;

export function palette(enabled: boolean) {
  return enabled
    ? {
        bold: code(1, 22),
        dim: code(2, 22),
        red: code(31, 39),
        green: code(32, 39),
        yellow: code(33, 39),
        cyan: code(36, 39),
      }
    : { bold: plain, dim: plain, red: plain, green: plain, yellow: plain, cyan: plain };
}

/** Display width: strips ANSI escapes; East Asian wide characters take two columns (see width.ts). */
export { displayWidth as width } from './width.js';
