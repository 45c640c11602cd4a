import { lstatSync, realpathSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, sep } from 'node:path';
import { InputError, type PortolanError, UsageError } from '../errors.js';
import { checkSupported, type ExportFile } from '../export/generator.js';
import { FORMAT_NAMES, loadGenerator } from '../export/index.js';
import { checkLineLimits } from '../export/limits.js';
import { buildExportModel } from '../export/model.js';
import { rpcCaveats } from '../plan/caveats.js';
import { buildPlan } from '../plan/plan.js';
import { warningLines } from '../plan/warning-lines.js';
import { type StagedFile, stageFile } from '../util/atomic.js';
import { makeDirectory } from '../util/mkdir.js';
import { counted } from '../util/plural.js';
import { readBounded } from '../util/read.js';
import { writeLines } from '../util/stream.js';
import { unknownName } from '../util/suggest.js';
import { safeLine } from '../util/terminal.js';
import { version } from '../util/version.js';
import { writeHelp } from '../util/wrap.js';
import { COMMON_HELP, exactlyOne, forUsage, oneOf, parse } from './args.js';
import { checkNotInput, checkOutputDir, checkOutputFile, fileOrStdout, writeFailure } from './output.js';
import { INVENTORY_HELP, INVENTORY_OPTIONS, siteFrom } from './site.js';

/**
 * The formats that always write several files, and what: without -o DIR they are refused before the
 * inventory is read. (iptables writes ip6tables.rules beside iptables.rules only when the plan has
 * IPv6 rules, so it is known only after planning.)
 */
const SEVERAL_FILES: Partial<Record<(typeof FORMAT_NAMES)[number], string>> = {
  aws: 'aws.tf.json, aws.cfn.json',
  firewalld: 'a script and one services/NAME.xml per application',
  ufw: 'an application profile and a script',
};

export const USAGE = `Usage: portolan export SITE.yaml --to FORMAT [--host NAME | --network] [--advisories] [-o FILE|DIR]

Firewall configs, change-request tables and diagrams from the plan of a site.

  -t, --to FORMAT    one of: ${FORMAT_NAMES.join(', ')}
  --host NAME        only the rules of this host (host firewalls: the host's own ruleset)
  --network          the network firewall's view: every flow that crosses it (the default)
  --advisories       also plan the cited advisories beyond the documents
  -o, --output PATH  write FILE, or DIR/ for formats that write several files (default, or -o -:
                     stdout; aws, firewalld and ufw need -o DIR, and are refused without it before
                     planning)
${INVENTORY_HELP}

The plan's warnings are printed on stderr.

${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      to: { type: 'string', short: 't' },
      host: { type: 'string' },
      network: { type: 'boolean' },
      advisories: { type: 'boolean' },
      output: { type: 'string', short: 'o' },
      ...INVENTORY_OPTIONS,
    },
    USAGE,
  );
  if (values.help) {
    writeHelp(USAGE);
    return 0;
  }
  const file = exactlyOne(positionals, 'inventory file', USAGE);
  if (values.to === undefined) throw new UsageError(`--to FORMAT is required\n${forUsage(USAGE)}`);
  const format = oneOf(values.to, FORMAT_NAMES, '--to') as (typeof FORMAT_NAMES)[number];
  if (values.host !== undefined && values.network)
    throw new UsageError('give either --host NAME or --network, not both');
  const several = SEVERAL_FILES[format];
  // `-o -` is stdout, as if -o were not given.
  const out = fileOrStdout(values.output);
  if (several !== undefined && out === undefined)
    throw new UsageError(`--to ${format} writes several files (${several}); give -o DIR`);
  // The output path is checked before planning: a directory for the formats that write several
  // files, else a file in an existing directory (or an existing directory to write into).
  if (out !== undefined) {
    if (several !== undefined) checkOutputDir(out, '-o', `--to ${format} writes several files (${several})`);
    else if (!out.endsWith('/') && !isDirectory(out)) checkOutputFile(out);
  }
  const { inventory, catalogs } = siteFrom(file, values);
  if (values.host !== undefined && !inventory.hosts.some((h) => h.name === values.host))
    throw new InputError(
      unknownName(
        'host',
        values.host,
        inventory.hosts.map((h) => h.name),
        { context: ' for --host' },
      ),
      { file },
    );
  // A one-host export plans only the pairs that host is part of.
  const plan = buildPlan(inventory, catalogs, {
    ...(values.advisories ? { advisories: true } : {}),
    ...(values.host !== undefined ? { host: values.host } : {}),
  });
  const generator = await loadGenerator(format);
  // What the rules leave shut although the product needs it next (WMI after 135): a warning on
  // stderr and, like the plan's own, in the change request's warnings.
  const caveats = rpcCaveats(plan, catalogs, values.host);
  const built = buildExportModel(plan, inventory, {
    ...(values.host !== undefined ? { host: values.host } : {}),
    generatorVersion: version(),
  });
  const model = { ...built, planWarnings: [...(built.planWarnings ?? []), ...caveats] };
  checkSupported(generator, model);
  const result = generator.render(model);
  checkLineLimits(format, result.files);
  const names = `${counted(result.files.length, 'file')} (${result.files.map((f) => f.path).join(', ')})`;
  if (out === undefined) {
    if (result.files.length !== 1) throw new UsageError(`--to ${format} writes ${names}; give -o DIR`);
    process.stdout.write(result.files[0]?.content ?? '');
  } else if (result.files.length === 1 && !out.endsWith('/') && !isDirectory(out)) {
    writeAtomically([{ path: out, content: result.files[0]?.content ?? '' }]);
    process.stderr.write(`wrote ${out}\n`);
  } else {
    checkOutputDir(out, '-o', `--to ${format} writes ${names}`);
    writeExportDir(out, format, result.files);
    // Every file written is counted: the export's own, and the list of them the next export to
    // the same directory reads to remove what it no longer writes.
    process.stderr.write(
      `wrote ${counted(result.files.length + 1, 'file')} to ${out}: ${counted(result.files.length, `${format} file`)} and ${result.files.length === 1 ? 'its' : 'their'} list ${manifestName(format)}\n`,
    );
  }
  // The plan's warnings (unspecified peers, facts left out, deferred ports), then the format's own.
  const planned = plan.warnings.map((w) => w.message);
  const said = new Set([...planned, ...caveats]);
  writeLines(
    process.stderr,
    [...warningLines(plan.warnings), ...result.warnings.filter((w) => !said.has(w)), ...caveats].map(
      (w) => `warning: ${safeLine(w)}`,
    ),
  );
  return 0;
}

function ioError(path: string, err: unknown): PortolanError {
  return writeFailure(path, err);
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Writes every file under a temporary name beside it (stageFile), then renames each into place: a
 * crash, a kill or a full disk leaves either the earlier file or the new one, never a truncated one.
 * If any file cannot be written, every temporary file is removed and nothing is replaced. A file
 * that is an input of this export is refused before anything is written (checkNotInput). An
 * exported file that is a device, FIFO or link is written as writeTarget says; an `own` file (the
 * manifest) always replaces the name itself.
 */
function writeAtomically(given: readonly { path: string; content: string; own?: boolean }[]): void {
  for (const f of given) if (!f.own) checkNotInput(f.path);
  const staged: StagedFile[] = [];
  for (const f of given) {
    try {
      makeDirectory(dirname(f.path));
      // portolan's own bookkeeping (`own`) replaces whatever has its name: a FIFO there blocked the
      // export, and a symbolic link there had the list written over the file it named.
      staged.push(stageFile(f.path, f.content, { follow: !f.own }));
    } catch (err) {
      for (const s of staged) s.discard();
      throw ioError(f.path, err);
    }
  }
  for (const [i, s] of staged.entries()) {
    try {
      s.commit();
    } catch (err) {
      for (const rest of staged.slice(i)) rest.discard();
      throw ioError(s.path, err);
    }
  }
}

/** The list of files an export wrote into a directory, so the next export of that format can tidy up. */
/** The most read of an earlier export's manifest (a list of the few files one format writes). */
const MAX_MANIFEST_BYTES = 1024 * 1024;

export function manifestName(format: string): string {
  return `.portolan-${format}.files`;
}

/**
 * An export into a directory: the files atomically (writeAtomically), then the files an earlier
 * export of the same format wrote there (its manifest) that this one no longer produces are removed
 * (a stale ip6tables.rules beside a new iptables.rules would be loaded too). Only files named in
 * portolan's own manifest are ever removed, and only plain relative names inside the directory.
 */
function writeExportDir(dir: string, format: string, files: readonly ExportFile[]): void {
  const manifest = join(dir, manifestName(format));
  let earlier: string[] = [];
  try {
    // Only a plain file is read, and only so much of it: a FIFO put in its place blocked the export.
    if (lstatSync(manifest).isFile())
      earlier = readBounded(manifest, MAX_MANIFEST_BYTES, 'export manifest')
        .toString('utf8')
        .split('\n')
        .filter(Boolean);
  } catch {
    // no earlier export of this format here, or not a list portolan wrote: nothing is removed
  }
  const names = files.map((f) => f.path);
  writeAtomically([
    ...files.map((f) => ({ path: join(dir, f.path), content: f.content })),
    { path: manifest, content: `${names.join('\n')}\n`, own: true },
  ]);
  let root = '';
  try {
    root = realpathSync(dir);
  } catch {
    return;
  }
  for (const name of earlier) {
    if (names.includes(name) || isAbsolute(name) || name.split(/[\\/]/).includes('..')) continue;
    try {
      // Inside the directory once symbolic links are followed: a manifest naming sub/x, with sub a
      // link to another directory, removed the file there.
      const parent = realpathSync(dirname(join(dir, name)));
      if (parent !== root && !parent.startsWith(`${root}${sep}`)) continue;
      const target = join(parent, basename(name));
      if (lstatSync(target).isFile()) rmSync(target);
    } catch {
      // already gone
    }
  }
}
