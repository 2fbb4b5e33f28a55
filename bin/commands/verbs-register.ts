import type { Command } from 'commander';

/**
 * The CLI's verbs, light: what `tapline --help` lists (name, arguments, description) and where
 * each verb's full definition lives. A verb module (bin/commands/<verb>.ts) pulls in the AWS
 * SDK, the pcap decoder, the rules engine…; importing all of them made `tapline --help` take
 * over a second and ~200 MB. Only the verb being run is imported now.
 *
 * `term` and `description` repeat what the verb module declares, for the listing only;
 * test/unit/cli-lazy-verbs.test.ts checks that the lazy listing equals the eager one.
 */
export interface VerbEntry {
  name: string;
  /** The listing's left column, as commander prints it for the full verb. */
  term: string;
  description: string;
  load: () => Promise<{ register(program: Command): void }>;
}

export const VERBS: readonly VerbEntry[] = [
  {
    name: 'capture',
    term: 'capture [options]',
    description: 'start a capture through the deployed start-capture function',
    load: () => import('./capture.ts'),
  },
  {
    name: 'status',
    term: 'status [options] <capture-id>',
    description: 'show a capture’s custody manifest: hosts, files, packets, drops',
    load: () => import('./status.ts'),
  },
  {
    name: 'list',
    term: 'list [options]',
    description: 'list recent captures from their manifests',
    load: () => import('./list.ts'),
  },
  {
    name: 'fetch',
    term: 'fetch [options] <capture-id>',
    description:
      'download a capture’s pcaps, verifying each SHA-256 against the manifest, the host hash and S3’s checksum',
    load: () => import('./fetch.ts'),
  },
  {
    name: 'plan',
    term: 'plan [options]',
    description:
      'dry run: which host a request or finding resolves to, the filter, the exact SSM parameters',
    load: () => import('./plan.ts'),
  },
  {
    name: 'summarize',
    term: 'summarize [options] <file>',
    description:
      'summarize a local pcap / pcap.gz / pcapng: conversations, DNS, TLS SNI, HTTP, anomalies',
    load: () => import('./summarize.ts'),
  },
  {
    name: 'detect',
    term: 'detect [options] <file>',
    description:
      'Run the flow-log rules on a local VPC Flow Logs file (text, gzip or Parquet; - for stdin)',
    load: () => import('./detect.ts'),
  },
  {
    name: 'lab',
    term: 'lab [options]',
    description:
      'run the whole pipeline on this Linux machine (root): namespaces, moto, real tcpdump, real handlers',
    load: () => import('./lab.ts'),
  },
];

/**
 * The verb a command line runs: its first word that is not an option (`help <verb>` asks for
 * that verb's help). The program itself has no options that take a value, so nothing before
 * the verb can be mistaken for it.
 */
export function verbOf(argv: readonly string[]): string | undefined {
  const words = argv.filter((a) => !a.startsWith('-'));
  return words[0] === 'help' ? words[1] : words[0];
}

/**
 * Registers the verb `argv` runs in full (its module is imported now) and every other verb as a
 * listing entry only. A listing entry is never run: the verb being run is always the full one.
 */
export async function registerLazily(
  program: Command,
  argv: readonly string[],
  verbs: readonly VerbEntry[] = VERBS,
): Promise<void> {
  const wanted = verbOf(argv);
  const terms = new Map<string, string>();
  for (const verb of verbs) {
    if (verb.name === wanted) {
      (await verb.load()).register(program);
      continue;
    }
    terms.set(verb.name, verb.term);
    program
      .command(verb.name)
      .description(verb.description)
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .action(() => {
        throw new Error(`internal: the ${verb.name} verb was not loaded for this command line`);
      });
  }
  const help = program.createHelp();
  program.configureHelp({
    subcommandTerm: (cmd) => terms.get(cmd.name()) ?? help.subcommandTerm(cmd),
  });
}

/** Every verb in full (what the CLI did before lazy loading; tests compare against it). */
export async function registerEagerly(program: Command): Promise<void> {
  for (const verb of VERBS) (await verb.load()).register(program);
}
