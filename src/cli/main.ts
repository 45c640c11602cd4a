import { PortolanError } from '../errors.js';
import { unknownName } from '../util/suggest.js';
import { sanitize } from '../util/terminal.js';
import { version } from '../util/version.js';
import { writeHelp } from '../util/wrap.js';

/** A command: takes its own argv, writes its output, returns the exit code. */
export type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<{ run: Command }> }> = {
  plan: {
    summary: 'every flow a site needs: host -> host, protocol, ports, why, source',
    load: () => import('./plan.js'),
  },
  catalog: {
    summary: 'list products, roles, features and cited catalog entries',
    load: () => import('./catalog.js'),
  },
  export: {
    summary: 'firewall configs, change-request tables and diagrams from a plan',
    load: () => import('./export.js'),
  },
  check: {
    summary: 'probe each planned flow from this host and say why it fails',
    load: () => import('./check.js'),
  },
  probe: {
    summary: "probe one host's ports from the command line, no inventory (HOST PORTS[/udp])",
    load: () => import('./probe.js'),
  },
  init: {
    summary: 'write a commented skeleton inventory for some products',
    load: () => import('./init.js'),
  },
  listen: {
    summary: 'temporary authenticated responders on the ports a host must accept',
    load: () => import('./listen.js'),
  },
  serve: {
    summary: 'the web console and API: sites, versions, exports, agents, verdict history',
    load: () => import('./serve.js'),
  },
  agent: {
    summary: "check this host's flows on a schedule and report them to portolan serve",
    load: () => import('./agent.js'),
  },
  lab: {
    summary: 'prove a site and its firewalls in network namespaces on this machine (root)',
    load: () => import('./lab.js'),
  },
  import: {
    summary: 'turn an RVTools or Proxmox VE inventory into a site inventory',
    load: () => import('./import.js'),
  },
  validate: {
    summary: 'check a site inventory (and custom catalogs) without planning',
    load: () => import('./validate.js'),
  },
};

export { version };

function help(): string {
  const names = Object.keys(COMMANDS);
  const pad = Math.max(...names.map((n) => n.length));
  return [
    'portolan: chart the ports backup, DR and migration products need, and prove them.',
    '',
    'Usage: portolan <command> [options]',
    '',
    'Commands:',
    ...names.map((n) => `  ${n.padEnd(pad)}  ${COMMANDS[n]?.summary}`),
    '',
    'Options for every command: --catalog DIR (extra catalogs, where a command reads them), --debug (stack traces), --no-color, -h/--help',
    '',
    'Run "portolan help <command>" or "portolan <command> --help" for a command\'s options;',
    '"portolan --version" prints the version.',
  ].join('\n');
}

/** The one top-level catch: bad input prints one line and exits 2; a bug prints the stack only with --debug. */
export async function main(argv: string[]): Promise<void> {
  const debug = argv.includes('--debug');
  quietOnClosedPipe(process.stdout);
  const [name, ...rest] = argv;
  try {
    if (name === 'help' && rest[0] !== undefined && !rest[0].startsWith('-')) {
      const topic = rest[0];
      const cmd = COMMANDS[topic];
      if (!cmd) throw unknownCommand(topic);
      const { run } = await cmd.load();
      process.exitCode = await run(['--help']);
      return;
    }
    // Asked for, the help is the output (stdout, exit 0); with no command it is a usage error
    // (stderr, exit 2), as every command's missing argument is: `portolan | less` shows nothing, and
    // a script that forgot the command fails.
    if (name === undefined) {
      writeHelp(help(), process.stderr);
      process.exitCode = 2;
      return;
    }
    if (name === '--help' || name === '-h' || name === 'help') {
      writeHelp(help());
      return;
    }
    if (name === '--version' || name === '-V') {
      process.stdout.write(`${version()}\n`);
      return;
    }
    const cmd = COMMANDS[name];
    if (!cmd) throw unknownCommand(name);
    const { run } = await cmd.load();
    process.exitCode = await run(rest);
  } catch (err) {
    process.exitCode = report(err, debug);
  }
}

function unknownCommand(name: string): PortolanError {
  const names = Object.keys(COMMANDS);
  // What other tools print their version with (`go version`, `tool -v`): pointed at the option.
  const context =
    name === 'version' || name === '-v' ? ' (the version is printed by portolan --version)' : '';
  return new PortolanError(unknownName('command', name, names, { context }), 'EUSAGE');
}

/**
 * The exit status of a process whose reader went away: 128 + SIGPIPE (13), what a shell reports for a
 * C tool killed by SIGPIPE (`yes | head -1`). Node ignores SIGPIPE, so the status is set by hand.
 */
export const CLOSED_PIPE_EXIT = 141;

/** True for the error a write to a pipe or socket whose reader has closed fails with (EPIPE, POSIX write(2)). */
export function isClosedPipe(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'EPIPE';
}

/**
 * Makes a closed reader on `out` end the process quietly with {@link CLOSED_PIPE_EXIT}, as
 * `portolan plan ... | head -1` must: no message, no further output. Every later write, from any
 * command or stream helper, would fail the same way, so the process ends at the first failure.
 */
export function quietOnClosedPipe(out: NodeJS.WriteStream): void {
  out.on('error', (err) => {
    if (isClosedPipe(err)) process.exit(CLOSED_PIPE_EXIT);
    throw err;
  });
}

/** An error message for the terminal: sanitize, and U+2028/U+2029 (no line break to a terminal) as `?`. */
function terminalText(text: string): string {
  return sanitize(text).replace(/[\u2028\u2029]/g, '?');
}

function report(err: unknown, debug: boolean): number {
  if (isClosedPipe(err)) return CLOSED_PIPE_EXIT;
  if (err instanceof PortolanError && err.code !== 'EINTERNAL') {
    process.stderr.write(`portolan: ${terminalText(err.message)}\n`);
    if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
    return err.code === 'EIO' ? 1 : 2;
  }
  const e = err as Error;
  process.stderr.write(`portolan: internal error: ${terminalText(e?.message ?? String(err))}\n`);
  process.stderr.write(
    debug ? `${e?.stack ?? ''}\n` : 'Run again with --debug to see the stack trace, and please report it.\n',
  );
  return 70;
}
