import { spawnSync } from 'node:child_process';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import {
  registerEagerly,
  registerLazily,
  VERBS,
  type VerbEntry,
  verbOf,
} from '../../bin/commands/verbs-register.ts';

const binPath = new URL('../../bin/tapline', import.meta.url).pathname;
const node = new URL('../../node_modules/.bin/node', import.meta.url).pathname;

/** The program as bin/main.ts builds it. */
function program(): Command {
  return new Command()
    .name('tapline')
    .description(
      'Event-driven packet capture for AWS: capture, status, fetch, summarize, detect, plan, lab.',
    )
    .exitOverride();
}

describe('lazy verb registration', () => {
  it('lists every verb exactly as the full registration does (names, arguments, descriptions)', async () => {
    const eager = program();
    await registerEagerly(eager);
    const lazy = program();
    await registerLazily(lazy, ['--help']);
    expect(lazy.helpInformation()).toBe(eager.helpInformation());
    expect(lazy.commands.map((c) => c.name())).toEqual(eager.commands.map((c) => c.name()));
  });

  it.each(VERBS.map((v) => v.name))(
    'registers %s in full when the command line runs it (same options and help)',
    async (name) => {
      const eager = program();
      await registerEagerly(eager);
      const lazy = program();
      await registerLazily(lazy, [name, '--json']);
      const full = eager.commands.find((c) => c.name() === name)!;
      const loaded = lazy.commands.find((c) => c.name() === name)!;
      expect(loaded.options.map((o) => o.flags)).toEqual(full.options.map((o) => o.flags));
      expect(loaded.helpInformation()).toBe(full.helpInformation());
      // and `tapline help <verb>` loads it too
      const viaHelp = program();
      await registerLazily(viaHelp, ['help', name]);
      expect(viaHelp.commands.find((c) => c.name() === name)!.helpInformation()).toBe(
        full.helpInformation(),
      );
    },
  );

  it('imports only the verb being run', async () => {
    const loaded: string[] = [];
    const verbs: VerbEntry[] = VERBS.map((v) => ({
      ...v,
      load: () => {
        loaded.push(v.name);
        return v.load();
      },
    }));
    await registerLazily(program(), ['--help'], verbs);
    expect(loaded).toEqual([]);
    await registerLazily(program(), ['summarize', 'x.pcap', '--json'], verbs);
    expect(loaded).toEqual(['summarize']);
  });

  it('finds the verb in a command line', () => {
    expect(verbOf([])).toBeUndefined();
    expect(verbOf(['--help'])).toBeUndefined();
    expect(verbOf(['detect', '-', '--json'])).toBe('detect');
    expect(verbOf(['help', 'fetch'])).toBe('fetch');
    expect(verbOf(['help'])).toBeUndefined();
  });

  it('the real CLI: --help lists every verb, a verb still runs, an unknown verb exits 2', () => {
    const help = spawnSync(node, [binPath, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    for (const verb of VERBS) expect(help.stdout).toContain(verb.term);
    const verbHelp = spawnSync(node, [binPath, 'status', '--help'], { encoding: 'utf8' });
    expect(verbHelp.status).toBe(0);
    expect(verbHelp.stdout).toContain('Usage: tapline status [options] <capture-id>');
    expect(verbHelp.stdout).toContain('--json');
    const unknown = spawnSync(node, [binPath, 'captur'], { encoding: 'utf8' });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('Did you mean capture?');
  });
});
