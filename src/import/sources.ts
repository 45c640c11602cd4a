import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { createInflateRaw } from 'node:zlib';
import { parse as parseCsv } from 'csv-parse/sync';
import { InputError } from '../errors.js';

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

/** Reads at most MAX_SOURCE_BYTES + 1 bytes of any file type (a FIFO or /dev/zero ends too). */
export async function readBounded(file: string, what: string): Promise<Buffer> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw new InputError(`cannot read the ${what}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
      file,
    });
  }
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(1 << 20);
      const { bytesRead } = await handle.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      chunks.push(buf.subarray(0, bytesRead));
      total += bytesRead;
      if (total > MAX_SOURCE_BYTES)
        throw new InputError(
          `the ${what} is larger than ${MAX_SOURCE_BYTES} bytes (expected an export of at most that size)`,
          { file },
        );
    }
    return Buffer.concat(chunks, total);
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`cannot read the ${what}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
      file,
    });
  } finally {
    await handle.close();
  }
}

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
  const bytes = await readBounded(file, 'RVTools export');
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
        `no column ${JSON.stringify(title)} (the ${what}) in the header row (expected an RVTools vInfo export; columns found: ${header
          .slice(0, 8)
          .map((h) => JSON.stringify(h))
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
  const { readSheet } = await import('read-excel-file/node');
  let data: unknown[][];
  try {
    data = (await readSheet(bytes, sheet)) as unknown[][];
  } catch (err) {
    const msg = (err as Error).message;
    throw new InputError(
      /sheet/i.test(msg) && /not found/i.test(msg)
        ? `the workbook has no sheet ${JSON.stringify(sheet)} (expected an RVTools export with a vInfo tab, or name the sheet with --sheet)`
        : `not a readable .xlsx workbook: ${msg}`,
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
  const bytes = await readBounded(file, 'pvesh output');
  const start = bytes
    .subarray(0, 4096)
    .toString('latin1')
    .replace(/^\uFEFF|^\xEF\xBB\xBF/, '');
  if (bytes.subarray(0, 4).equals(ZIP_MAGIC) || (!/^\s*[[{]/.test(start) && /^[^\n]*[,;]/.test(start)))
    throw new InputError(
      `looks like ${bytes.subarray(0, 4).equals(ZIP_MAGIC) ? 'an .xlsx workbook' : 'CSV'}, not pvesh JSON output (expected the output of pvesh get /cluster/resources --output-format json; for an RVTools export use portolan import rvtools)`,
      { file },
    );
  let data: unknown;
  try {
    data = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new InputError(
      `not JSON text: ${(err as Error).message} (expected the output of pvesh get /cluster/resources --output-format json)`,
      { file },
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
      if (typeof v === 'string' || typeof v === 'number') return String(v);
      if (v !== undefined && v !== null)
        notes.push(
          `"${k}" is ${Array.isArray(v) ? 'an array' : `a ${typeof v}`}, expected a string or number; ignored`,
        );
      return '';
    };
    const type = text('type');
    if (type !== 'qemu' && type !== 'lxc' && type !== 'node') {
      const key = type.replace(/[^\w.-]/g, '').slice(0, 40) || '(no type)';
      other.set(key, (other.get(key) ?? 0) + 1);
      return;
    }
    let vmid = type === 'node' ? '' : text('vmid');
    if (vmid && !/^\d+$/.test(vmid)) {
      notes.push(`"vmid" ${JSON.stringify(vmid).slice(0, 40)} is not a number; ignored`);
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
