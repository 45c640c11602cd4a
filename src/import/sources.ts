import { basename } from 'node:path';
import { createInflateRaw, inflateRawSync } from 'node:zlib';
import { parse as parseCsv } from 'csv-parse/sync';
import { InputError, quote } from '../errors.js';
import { jsonSyntaxError } from '../util/json.js';
import { readBounded as readFileBounded, type TextOnly } from '../util/read.js';
import { safeLine } from '../util/terminal.js';

/**
 * One row of a source inventory, reduced to what an import needs. Every field is the cell's text
 * ('' when the source has no such column or the cell is empty).
 */
export interface SourceRow {
  /** Where the row is: `vInfo.csv:12` (CSV line, spreadsheet row) or `resources.json[7]` (array index). */
  at: string;
  kind: 'vm' | 'node';
  name: string;
  /** The address cell as written: may hold several addresses, or none. */
  address: string;
  dns: string;
  os: string;
  /** `poweredOff` / `stopped` mark a VM that is not running. */
  power: string;
  template: boolean;
  /** Proxmox VE tags, `;`-separated; '' elsewhere. */
  tags: string;
  /** What was odd in the row's own fields (a name that is not a string), each a warning. */
  notes?: string[];
}

/** RVTools vInfo column titles (RVTools 4.x; Dell's current releases keep them). */
export interface RvtoolsColumns {
  name: string;
  address: string;
  dns: string;
  os: string[];
  powerstate: string;
  template: string;
}

export const RVTOOLS_COLUMNS: RvtoolsColumns = {
  name: 'VM',
  address: 'Primary IP Address',
  dns: 'DNS Name',
  os: ['OS according to the VMware Tools', 'OS according to the configuration file'],
  powerstate: 'Powerstate',
  template: 'Template',
};

/**
 * The largest source file read (bytes). An export of 100,000 VMs with every vInfo column is about
 * 150 MB; anything past this is refused rather than read into memory.
 */
export const MAX_SOURCE_BYTES = 512 * 1024 * 1024;

/**
 * Reads at most MAX_SOURCE_BYTES + 1 bytes of any file type, as every file a command names is read
 * (util/read.ts readBounded): a FIFO is opened without blocking and given up on when its writer
 * stays silent, /dev/zero ends at the limit, a directory or a missing file is said in words.
 * InputError, located at `file`.
 */
export async function readBounded(
  file: string,
  what: string,
  limit = MAX_SOURCE_BYTES,
  text?: TextOnly,
): Promise<Buffer> {
  return readFileBounded(file, limit, what, undefined, text);
}

/**
 * The largest pvesh output read (bytes). `pvesh get /cluster/resources` lists about 300 bytes per
 * guest, node or storage: 64 MiB is some 200,000 resources, past any Proxmox VE cluster (the
 * inventory's own default limit is the same). JSON.parse holds the whole text and its objects at
 * once, so a larger file is refused before it is read.
 */
export const MAX_PVESH_BYTES = 64 * 1024 * 1024;

const ZIP_MAGIC = Buffer.from('PK\u0003\u0004', 'latin1');
/** Compound File Binary (OLE2): the container of Excel 97-2003 .xls workbooks. */
const OLE_MAGIC = Buffer.from([0xd0, 0xcf, 0x11, 0xe0]);
/**
 * The most a workbook may unzip to. V8 cannot hold a string past 512 MiB, which the reader needs for
 * a sheet's XML, so a larger workbook could only fail after gigabytes of memory; RVTools' vInfo of
 * 100,000 VMs is well under this. A zip whose directory claims more is refused before unzipping.
 */
export const MAX_XLSX_UNZIPPED = 256 * 1024 * 1024;

/**
 * The uncompressed sizes a zip archive's central directory declares, summed (bytes), read from its
 * end-of-central-directory record (PKWARE APPNOTE 4.3.16) and directory headers (4.3.12);
 * undefined when the directory cannot be found. A ZIP64 entry (size 0xffffffff) counts as
 * Infinity: an .xlsx that needs ZIP64 is past any size read here anyway.
 */
export function zipUnzippedSize(bytes: Buffer): number | undefined {
  const eocd = endOfCentralDirectory(bytes);
  if (eocd < 0) return undefined;
  const entries = bytes.readUInt16LE(eocd + 10);
  let at = bytes.readUInt32LE(eocd + 16);
  let total = 0;
  for (let n = 0; n < entries; n++) {
    if (at + 46 > bytes.length || bytes.readUInt32LE(at) !== 0x02014b50) return undefined;
    const size = bytes.readUInt32LE(at + 24);
    total += size === 0xffffffff ? Number.POSITIVE_INFINITY : size;
    at += 46 + bytes.readUInt16LE(at + 28) + bytes.readUInt16LE(at + 30) + bytes.readUInt16LE(at + 32);
  }
  return total;
}

/**
 * What a zip archive's entries really inflate to (bytes), summed, counting at most `limit` + 1:
 * each entry's data is found through its local header (PKWARE APPNOTE 4.3.7) at the offset the
 * central directory gives (4.3.12) and inflated in 64 KiB pieces that are counted and dropped, so a
 * bomb whose headers understate its sizes is measured without holding it. Stored entries (method 0)
 * count their stored length; entries that cannot be read (a bad header, another method, a corrupt
 * stream) count 0 and are left to the workbook reader to report. Undefined when the directory
 * cannot be found.
 */
export async function zipInflatedSize(bytes: Buffer, limit: number): Promise<number | undefined> {
  const eocd = endOfCentralDirectory(bytes);
  if (eocd < 0) return undefined;
  const entries = bytes.readUInt16LE(eocd + 10);
  let at = bytes.readUInt32LE(eocd + 16);
  let total = 0;
  for (let n = 0; n < entries && total <= limit; n++) {
    if (at + 46 > bytes.length || bytes.readUInt32LE(at) !== 0x02014b50) return undefined;
    const method = bytes.readUInt16LE(at + 10);
    const stored = bytes.readUInt32LE(at + 20);
    const local = bytes.readUInt32LE(at + 42);
    at += 46 + bytes.readUInt16LE(at + 28) + bytes.readUInt16LE(at + 30) + bytes.readUInt16LE(at + 32);
    if (local + 30 > bytes.length || bytes.readUInt32LE(local) !== 0x04034b50) continue;
    const data = local + 30 + bytes.readUInt16LE(local + 26) + bytes.readUInt16LE(local + 28);
    if (method === 0) total += Math.min(stored, Math.max(0, bytes.length - data));
    else if (method === 8) total += await inflatedLength(bytes.subarray(data), limit + 1 - total);
  }
  return total;
}

/**
 * The length of the raw DEFLATE stream (RFC 1951) at the start of `data` once inflated, counted up
 * to `most` bytes (inflation stops there); 0 when the stream is corrupt. Trailing bytes after the
 * stream's last block are ignored.
 */
function inflatedLength(data: Buffer, most: number): Promise<number> {
  return new Promise((resolve) => {
    const inflate = createInflateRaw({ chunkSize: 64 * 1024 });
    let length = 0;
    let done = false;
    const finish = (n: number) => {
      if (done) return;
      done = true;
      resolve(n);
    };
    inflate.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length >= most) {
        finish(length);
        inflate.destroy();
      }
    });
    inflate.on('end', () => finish(length));
    inflate.on('error', () => finish(0));
    inflate.on('close', () => finish(length));
    inflate.end(data);
  });
}

/** The 1-based line and column of character `offset` of `text` (columns count UTF-16 units). */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  return { line: before.split('\n').length, column: offset - before.lastIndexOf('\n') };
}

function endOfCentralDirectory(bytes: Buffer): number {
  const from = Math.max(0, bytes.length - 22 - 0xffff);
  for (let i = bytes.length - 22; i >= from; i--) if (bytes.readUInt32LE(i) === 0x06054b50) return i;
  return -1;
}

/**
 * RVTools' vInfo tab, exported as CSV (RVTools' "Export vInfo to csv": a header row, then one row per
 * VM; `,` or `;` separated, as the Windows locale had it) or as the whole .xlsx workbook (the vInfo
 * sheet is read). Column titles are looked up as `columns` names them.
 */
export async function readRvtools(
  file: string,
  columns: RvtoolsColumns,
  sheet = 'vInfo',
): Promise<SourceRow[]> {
  // CSV is text: a NUL is refused at once, unless the file is a workbook (a zip, or an old .xls).
  const bytes = await readBounded(file, 'RVTools export', MAX_SOURCE_BYTES, {
    expected: 'an RVTools vInfo export: CSV text or an .xlsx workbook',
    binary: (head) => head.subarray(0, 4).equals(ZIP_MAGIC) || head.subarray(0, 4).equals(OLE_MAGIC),
  });
  const name = basename(file);
  const zip = bytes.subarray(0, 4).equals(ZIP_MAGIC);
  if (!zip && /\.xls[xmb]?$/i.test(name))
    throw new InputError(
      bytes.subarray(0, 4).equals(OLE_MAGIC)
        ? "an Excel 97-2003 workbook (.xls), which this import does not read (expected .xlsx: save it as .xlsx, or use RVTools' Export vInfo to csv)"
        : 'named like a workbook but not one: an .xlsx file is a zip archive and this one does not start as one (expected an RVTools .xlsx export, or a CSV file)',
      { file },
    );
  const table = zip ? await xlsxTable(bytes, file, sheet) : csvTable(bytes, file);
  const header = table.rows[0]?.cells ?? [];
  const index = (title: string) => header.findIndex((h) => h.trim().toLowerCase() === title.toLowerCase());
  const need = (title: string, what: string) => {
    const i = index(title);
    if (i < 0)
      throw new InputError(
        `no column ${quote(title)} (the ${what}) in the header row (expected an RVTools vInfo export; columns found: ${header
          .slice(0, 8)
          .map((h) => quote(h))
          .join(
            ', ',
          )}${header.length > 8 ? ', ...' : ''}; name another column under import.columns in the map)`,
        { file, line: table.rows[0]?.line ?? 1 },
      );
    return i;
  };
  const iName = need(columns.name, 'VM name');
  const iAddress = need(columns.address, 'IP address');
  const iDns = index(columns.dns);
  const iOs = columns.os.map(index).filter((i) => i >= 0);
  const iPower = index(columns.powerstate);
  const iTemplate = index(columns.template);
  const cell = (cells: string[], i: number) => (i >= 0 ? (cells[i] ?? '').trim() : '');
  const out: SourceRow[] = [];
  for (const { line, cells } of table.rows.slice(1)) {
    if (cells.every((c) => c.trim() === '')) continue;
    out.push({
      at: `${name}:${line}`,
      kind: 'vm',
      name: cell(cells, iName),
      address: cell(cells, iAddress),
      dns: cell(cells, iDns),
      os: iOs.map((i) => cell(cells, i)).find((v) => v !== '') ?? '',
      power: cell(cells, iPower),
      template: /^(true|yes|1)$/i.test(cell(cells, iTemplate)),
      tags: '',
    });
  }
  return out;
}

interface Table {
  rows: { line: number; cells: string[] }[];
}

function csvTable(bytes: Buffer, file: string): Table {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    // RVTools on a Western-European Windows writes CP-1252; latin1 reads those bytes as the same letters
    // for every printable character but a few (the euro sign, curly quotes).
    text = bytes.toString('latin1');
  }
  text = text.replace(/^\uFEFF/, '');
  if (/^\s*[[{]/.test(text))
    throw new InputError(
      'looks like JSON, not an RVTools CSV export (expected a vInfo CSV or .xlsx; for pvesh get /cluster/resources output use portolan import pvesh)',
      { file },
    );
  const first = text.slice(0, text.indexOf('\n') >>> 0);
  const delimiter = (first.match(/;/g)?.length ?? 0) > (first.match(/,/g)?.length ?? 0) ? ';' : ',';
  try {
    const records = parseCsv(text, {
      delimiter,
      relax_column_count: true,
      info: true,
      skip_empty_lines: true,
    }) as unknown as { record: string[]; info: { lines: number } }[];
    // info.lines is the line the record ends on; a quoted cell may span lines, so count back.
    return {
      rows: records.map(({ record, info }) => ({
        line: info.lines - (record.join('').match(/\n/g)?.length ?? 0),
        cells: record,
      })),
    };
  } catch (err) {
    const e = err as Error & { lines?: number };
    throw new InputError(`not valid CSV: ${e.message.replace(/^CSV_\w+:?\s*/, '')}`, {
      file,
      ...(e.lines ? { line: e.lines } : {}),
    });
  }
}

async function xlsxTable(bytes: Buffer, file: string, sheet: string): Promise<Table> {
  const unzipped = zipUnzippedSize(bytes);
  const over = (size: string) =>
    new InputError(
      `the workbook unzips to ${size}, over the ${MAX_XLSX_UNZIPPED / 1024 / 1024} MiB this import reads (expected an RVTools export; for a larger one use RVTools' Export vInfo to csv)`,
      { file },
    );
  if (unzipped !== undefined && unzipped > MAX_XLSX_UNZIPPED)
    throw over(Number.isFinite(unzipped) ? `${Math.ceil(unzipped / 1024 / 1024)} MiB` : 'more than 4 GiB');
  // The directory can understate what the data inflates to: measure it before the reader holds it.
  const inflated = await zipInflatedSize(bytes, MAX_XLSX_UNZIPPED);
  if (inflated !== undefined && inflated > MAX_XLSX_UNZIPPED)
    throw new InputError(
      `the workbook's data unzips to more than the ${MAX_XLSX_UNZIPPED / 1024 / 1024} MiB this import reads, though its directory declares ${Math.ceil((unzipped ?? 0) / 1024)} KiB (expected an RVTools export whose sizes are true; for a larger one use RVTools' Export vInfo to csv)`,
      { file },
    );
  // The reader pads the sheet to a dense table and parses it in time-sliced pieces: refuse, with
  // the cell that says so, the shapes it would take minutes or all memory on.
  for (const { path, xml } of sheetXml(bytes, sheet)) checkSheetShape(xml, file, sheet, path);
  const { readSheet } = await import('read-excel-file/node');
  let data: unknown[][];
  try {
    data = (await readSheet(bytes, sheet)) as unknown[][];
  } catch (err) {
    const msg = (err as Error).message;
    // The reader names a bad cell "<c/> at row 4, col 1: VALUE_INVALID": said as the cell's name.
    const cell = /^<c\/> at row (\d+), col (\d+): (\w+)$/.exec(msg);
    throw new InputError(
      /sheet/i.test(msg) && /not found/i.test(msg)
        ? `the workbook has no sheet ${quote(sheet)} (expected an RVTools export with a vInfo tab, or name the sheet with --sheet)`
        : cell
          ? `sheet ${quote(sheet)} cell ${columnName(Number(cell[2]))}${cell[1]}: its value cannot be read (${cell[3]}; expected a value of the type the cell declares, as Excel writes it)`
          : `not a readable .xlsx workbook: ${safeLine(msg)}`,
      { file },
    );
  }
  return {
    rows: data.map((cells, i) => ({
      line: i + 1,
      cells: cells.map((c) =>
        c === null || c === undefined ? '' : c instanceof Date ? c.toISOString() : String(c),
      ),
    })),
  };
}

/** The last row (ECMA-376 Part 1, 18.3.1.73: `r` of a row is at most 1048576) and column (XFD) of a sheet. */
const SHEET_ROWS = 1_048_576;
const SHEET_COLUMNS = 16_384;
/**
 * The most rows a workbook sheet may reach (the last row number holding anything). The reader
 * copies every row it holds again for each 64 KiB piece of XML it parses, and halves the piece
 * each time that takes longer than 7 ms, recursing once per piece: past a few hundred thousand
 * rows on a busy machine the pieces shrink to nothing and the stack overflows after a minute.
 * RVTools' vInfo has one row per VM; a vCenter holds at most 45,000 (vSphere 8 configuration
 * maximums), so this is four times the largest linked estate's share.
 */
export const MAX_XLSX_ROWS = 200_000;
/**
 * The most cells of a sheet's dense table (its last row with data times its last column with data),
 * which the reader builds in full: RVTools' vInfo of 100,000 VMs is about 9.5 million (95 columns).
 */
export const MAX_XLSX_CELLS = 32 * 1024 * 1024;

/** A cell reference `A1` ... `XFD1048576` as [row, column], 1-based; undefined when it is not one. */
function cellRef(ref: string): [number, number] | undefined {
  const m = /^([A-Z]{1,3})([1-9][0-9]{0,6})$/.exec(ref);
  if (!m) return undefined;
  let column = 0;
  for (const ch of m[1] as string) column = column * 26 + ch.charCodeAt(0) - 64;
  const row = Number(m[2]);
  return row <= SHEET_ROWS && column <= SHEET_COLUMNS ? [row, column] : undefined;
}

function columnName(n: number): string {
  let name = '';
  for (let c = n; c > 0; c = Math.floor((c - 1) / 26)) name = String.fromCharCode(65 + ((c - 1) % 26)) + name;
  return name;
}

/**
 * Refuses a worksheet's XML (SpreadsheetML, ECMA-376 Part 1, 18.3.1) whose shape the workbook
 * reader cannot hold: a row or cell reference that is not one (`ZZZZZZZZ2`, `A0`, a cell without
 * `r`), rows past MAX_XLSX_ROWS, or data spanning more than MAX_XLSX_CELLS cells. Empty cells
 * (`<c r="XFD9"/>`) do not widen the table. Each refusal names the cell or row. One pass over the
 * tags.
 */
export function checkSheetShape(xml: string, file: string, sheet: string, path: string): void {
  const where = `sheet ${quote(sheet)} (${path})`;
  const refuse = (detail: string) => new InputError(`${where}: ${detail}`, { file });
  const tag = /<(?:[A-Za-z_][\w.-]*:)?(row|c)(?=[\s/>])([^>]*?)(\/?)>/g;
  const attr = /(?:^|\s)r\s*=\s*(?:"([^"]*)"|'([^']*)')/;
  let row = 0;
  let lastRow = 0;
  let dataRow = 0;
  let dataColumn = 0;
  let widest = '';
  for (let m = tag.exec(xml); m; m = tag.exec(xml)) {
    const a = attr.exec(m[2] as string);
    const r = a ? (a[1] ?? a[2] ?? '') : undefined;
    if (m[1] === 'row') {
      if (r === undefined) row++;
      else if (/^[1-9][0-9]{0,6}$/.test(r) && Number(r) <= SHEET_ROWS) row = Number(r);
      else throw refuse(`row number ${quote(r.slice(0, 20))} is not a row (expected 1 to ${SHEET_ROWS})`);
      if (row > MAX_XLSX_ROWS)
        throw refuse(
          `reaches row ${row}, past the ${MAX_XLSX_ROWS} rows this import reads from a workbook (expected an RVTools export, one row per VM; delete the rows below the data, or use RVTools' Export vInfo to csv)`,
        );
      lastRow = Math.max(lastRow, row);
      continue;
    }
    if (r === undefined)
      throw refuse(
        `row ${row}: a cell without its reference (expected <c r="A${row || 1}">, as Excel writes it)`,
      );
    const at = cellRef(r);
    if (!at)
      throw refuse(
        `cell reference ${quote(r.slice(0, 20))} is not a cell (expected A1 to ${columnName(SHEET_COLUMNS)}${SHEET_ROWS})`,
      );
    if (at[0] > MAX_XLSX_ROWS)
      throw refuse(
        `cell ${r} is past the ${MAX_XLSX_ROWS} rows this import reads from a workbook (expected an RVTools export, one row per VM; use RVTools' Export vInfo to csv)`,
      );
    if (m[3] === '/') continue; // an empty cell: the reader keeps nothing of it
    dataRow = Math.max(dataRow, at[0], lastRow);
    if (at[1] > dataColumn) {
      dataColumn = at[1];
      widest = r;
    }
    if (dataRow * dataColumn > MAX_XLSX_CELLS)
      throw refuse(
        `data reaches row ${dataRow} and column ${columnName(dataColumn)} (cell ${widest}): ${dataRow} x ${dataColumn} cells, more than the ${MAX_XLSX_CELLS} this import reads (expected an RVTools export; delete what lies outside the table, or use RVTools' Export vInfo to csv)`,
      );
  }
}

/**
 * The XML of the worksheet named `sheet` (found through xl/workbook.xml and its relationships,
 * ECMA-376 Part 1, 18.2.19 and Part 2, 9.2), or of every worksheet when the name cannot be
 * resolved so (the reader then reports the name). Entries are inflated whole: their total was
 * measured against MAX_XLSX_UNZIPPED before.
 */
function sheetXml(bytes: Buffer, sheet: string): { path: string; xml: string }[] {
  const entries = zipEntries(bytes);
  const read = (name: string) => {
    const e = entries.get(name);
    if (!e) return undefined;
    try {
      const data = bytes.subarray(e.data, e.data + e.compressed);
      const raw =
        e.method === 0
          ? data
          : e.method === 8
            ? inflateRawSync(data, { maxOutputLength: MAX_XLSX_UNZIPPED + 1 })
            : undefined;
      return raw?.toString('latin1');
    } catch {
      return undefined; // a corrupt entry: the reader says so
    }
  };
  const xmlText = (t: string) =>
    Buffer.from(t, 'latin1')
      .toString('utf8')
      .replace(/&(?:#x([0-9a-f]+)|#([0-9]+)|(amp|lt|gt|quot|apos));/gi, (_, hex, dec, named) =>
        hex || dec
          ? String.fromCodePoint(Math.min(0x10ffff, Number.parseInt(hex ?? dec, hex ? 16 : 10)))
          : (({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[
              String(named).toLowerCase()
            ] ?? ''),
      );
  const attrOf = (tag: string, name: RegExp) => {
    const m = new RegExp(`\\s${name.source}\\s*=\\s*(?:"([^"]*)"|'([^']*)')`).exec(tag);
    return m ? xmlText(m[1] ?? m[2] ?? '') : undefined;
  };
  const workbook = read('xl/workbook.xml') ?? '';
  const rels = read('xl/_rels/workbook.xml.rels') ?? '';
  const id = (workbook.match(/<(?:\w+:)?sheet\s[^>]*>/g) ?? [])
    .filter((t) => attrOf(t, /name/) === sheet)
    .map((t) => attrOf(t, /(?:\w+:)?id/))[0];
  const target = (rels.match(/<(?:\w+:)?Relationship\s[^>]*>/g) ?? [])
    .filter((t) => id !== undefined && attrOf(t, /Id/) === id)
    .map((t) => attrOf(t, /Target/))[0];
  const path = target?.startsWith('/') ? target.slice(1) : target ? `xl/${target}` : undefined;
  const named = path !== undefined ? read(path) : undefined;
  if (path !== undefined && named !== undefined) return [{ path, xml: named }];
  const all: { path: string; xml: string }[] = [];
  for (const name of entries.keys())
    if (/^xl\/worksheets\/[^/]+\.xml$/i.test(name)) {
      const xml = read(name);
      if (xml !== undefined) all.push({ path: name, xml });
    }
  return all;
}

/**
 * A zip archive's entries by name (PKWARE APPNOTE 4.3.12 central directory, 4.3.7 local headers):
 * compression method, where the data starts and its compressed length. Entries whose headers do
 * not hold together are left out.
 */
function zipEntries(bytes: Buffer): Map<string, { method: number; data: number; compressed: number }> {
  const out = new Map<string, { method: number; data: number; compressed: number }>();
  const eocd = endOfCentralDirectory(bytes);
  if (eocd < 0) return out;
  const count = bytes.readUInt16LE(eocd + 10);
  let at = bytes.readUInt32LE(eocd + 16);
  for (let n = 0; n < count; n++) {
    if (at + 46 > bytes.length || bytes.readUInt32LE(at) !== 0x02014b50) break;
    const method = bytes.readUInt16LE(at + 10);
    const compressed = bytes.readUInt32LE(at + 20);
    const nameLength = bytes.readUInt16LE(at + 28);
    const local = bytes.readUInt32LE(at + 42);
    const name = bytes.toString('utf8', at + 46, Math.min(bytes.length, at + 46 + nameLength));
    at += 46 + nameLength + bytes.readUInt16LE(at + 30) + bytes.readUInt16LE(at + 32);
    if (local + 30 > bytes.length || bytes.readUInt32LE(local) !== 0x04034b50) continue;
    const data = local + 30 + bytes.readUInt16LE(local + 26) + bytes.readUInt16LE(local + 28);
    if (data > bytes.length) continue;
    out.set(name, { method, data, compressed: Math.min(compressed, bytes.length - data) });
  }
  return out;
}

/**
 * Proxmox VE's `pvesh get /cluster/resources --output-format json`: an array of resources; `qemu` and
 * `lxc` are guests, `node` the cluster's own servers, others (storage, pool, sdn) are left out. The
 * resource list carries no IP address and no OS: those come from the map's `domain` and `rules`.
 * (Proxmox VE API viewer, GET /cluster/resources.)
 */
export async function readPvesh(file: string): Promise<SourceRow[]> {
  return (await readPveshResources(file)).rows;
}

/**
 * readPvesh, and the resources that are not guests or nodes (storage, sdn, pool, ...), counted by
 * their `type` (`(no type)` for an entry without one), so the import summary can say what the
 * cluster listed that cannot be a host.
 */
export async function readPveshResources(
  file: string,
): Promise<{ rows: SourceRow[]; other: Map<string, number> }> {
  const bytes = await readBounded(file, 'pvesh output', MAX_PVESH_BYTES, {
    expected: 'the output of pvesh get /cluster/resources --output-format json, which is JSON text',
  });
  const start = bytes
    .subarray(0, 4096)
    .toString('latin1')
    .replace(/^\uFEFF|^\xEF\xBB\xBF/, '');
  if (bytes.subarray(0, 4).equals(ZIP_MAGIC) || (!/^\s*[[{]/.test(start) && /^[^\n]*[,;]/.test(start)))
    throw new InputError(
      `looks like ${bytes.subarray(0, 4).equals(ZIP_MAGIC) ? 'an .xlsx workbook' : 'CSV'}, not pvesh JSON output (expected the output of pvesh get /cluster/resources --output-format json; for an RVTools export use portolan import rvtools)`,
      { file },
    );
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    // The lenient decoder marks the first bad sequence with U+FFFD: that is where it is.
    const lenient = new TextDecoder('utf-8').decode(bytes);
    throw new InputError(
      'not UTF-8 text (expected the output of pvesh get /cluster/resources --output-format json, which is UTF-8)',
      { file, ...lineColumn(lenient, Math.max(0, lenient.indexOf('\uFFFD'))) },
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    // Located and said in words of its own: V8's message gives an offset only for some errors, and
    // for others quotes the text around the error, line breaks and all.
    const e = jsonSyntaxError(text);
    throw new InputError(
      `not JSON text: ${e ? e.problem : safeLine((err as Error).message)} (expected the output of pvesh get /cluster/resources --output-format json)`,
      { file, ...(e ? { line: e.line, column: e.column } : {}) },
    );
  }
  if (!Array.isArray(data))
    throw new InputError(
      'expected a JSON array of resources (the output of pvesh get /cluster/resources --output-format json)',
      { file },
    );
  const name = basename(file);
  const out: SourceRow[] = [];
  const other = new Map<string, number>();
  data.forEach((r: unknown, i) => {
    if (typeof r !== 'object' || r === null || Array.isArray(r)) {
      const kind = `(not a resource object: ${r === null ? 'null' : Array.isArray(r) ? 'an array' : typeof r})`;
      other.set(kind, (other.get(kind) ?? 0) + 1);
      return;
    }
    const o = r as Record<string, unknown>;
    const notes: string[] = [];
    // A field pvesh writes as a string or a number; anything else is named, not silently dropped.
    const text = (k: string) => {
      const v = o[k];
      if (typeof v === 'string') return v;
      // A number JSON text holds but a double does not (1e400 reads as Infinity, 2^53 + 1 as 2^53)
      // would become a different name or id: named instead.
      if (typeof v === 'number') {
        if (Number.isSafeInteger(v)) return String(v);
        notes.push(`"${k}" is a number that does not read back exactly (${v}); ignored`);
        return '';
      }
      if (v !== undefined && v !== null)
        notes.push(
          `"${k}" is ${Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`}, expected a string or number; ignored`,
        );
      return '';
    };
    const type = text('type');
    if (type !== 'qemu' && type !== 'lxc' && type !== 'node') {
      // Shown in the summary: any other character is a ? (dropping it could make "qe\x1bmu" read as qemu).
      const key = type.replace(/[^\w.-]/g, '?').slice(0, 40) || '(no type)';
      other.set(key, (other.get(key) ?? 0) + 1);
      return;
    }
    let vmid = type === 'node' ? '' : text('vmid');
    if (vmid && !/^\d+$/.test(vmid)) {
      notes.push(`"vmid" ${quote(vmid).slice(0, 40)} is not a number; ignored`);
      vmid = '';
    }
    out.push({
      at: `${name}[${i}]`,
      kind: type === 'node' ? 'node' : 'vm',
      name: type === 'node' ? text('node') : text('name') || (vmid ? `vm-${vmid}` : ''),
      address: '',
      dns: '',
      os: '',
      power: text('status'),
      template: text('template') === '1',
      tags: text('tags'),
      ...(notes.length ? { notes } : {}),
    });
  });
  return { rows: out, other };
}
