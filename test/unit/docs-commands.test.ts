import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { registerEagerly } from '../../bin/commands/verbs-register.ts';

/**
 * What the user documentation (README.md, docs/*.md) names must exist: every `tapline <verb>`
 * command line and its `--flags`, every stage parameter in docs/deploy.md's table (and its
 * default), every repository path, every relative link and its #anchor. The checks are pure
 * functions of the markdown, so the last block feeds them broken markdown to show they fail.
 */

const repo = new URL('../../', import.meta.url).pathname;
const DOCS = [
  'README.md',
  ...readdirSync(join(repo, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];
const read = (file: string) => readFileSync(join(repo, file), 'utf8');

/** A piece of markdown that may hold a command: one fenced line, or one inline code span. */
interface Snippet {
  file: string;
  line: number;
  text: string;
}

/** Fenced code lines (a trailing `\` joins the next line) and inline code spans, with line numbers. */
function codeSnippets(markdown: string, file: string): Snippet[] {
  const out: Snippet[] = [];
  const lines = markdown.split('\n');
  let fenced = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      continue;
    }
    if (fenced) {
      let text = line;
      const first = i;
      while (text.endsWith('\\') && i + 1 < lines.length)
        text = `${text.slice(0, -1)} ${lines[++i]}`;
      out.push({ file, line: first + 1, text });
      continue;
    }
    for (const m of line.matchAll(/`([^`]+)`/g)) out.push({ file, line: i + 1, text: m[1]! });
  }
  return out;
}

/** Shell-like words: quotes group, an unquoted word starting with # ends the line. */
function words(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/"[^"]*"|'[^']*'|[^\s"']+(?:"[^"]*"|'[^']*'|[^\s"']+)*/g)) {
    if (m[0].startsWith('#')) break;
    out.push(m[0]);
  }
  return out;
}

interface DocCommand {
  where: string;
  verb: string;
  flags: string[];
}

/** Every `tapline <verb> …` in the snippets (also `npx tapline`, and each part of a pipeline). */
function taplineCommands(snippets: Snippet[]): DocCommand[] {
  const out: DocCommand[] = [];
  for (const s of snippets) {
    for (const part of s.text.split(/\s\|\s/)) {
      const w = words(part);
      const at = w.findIndex((x) => x === 'tapline' || x.endsWith('/tapline'));
      if (at < 0) continue;
      const verb = w[at + 1];
      // `tapline detect: 155 records` (output), `tapline` alone: not a command line
      if (verb === undefined || !/^[a-z]+$/.test(verb)) continue;
      const flags = w
        .slice(at + 2)
        .map((x) => /^\[?(--[a-z][a-z0-9-]*)/.exec(x)?.[1])
        .filter((x): x is string => x !== undefined);
      out.push({ where: `${s.file}:${s.line}`, verb, flags });
    }
  }
  return out;
}

/** Problems with documented command lines, checked against the real commander program. */
function commandProblems(commands: DocCommand[], program: Command): string[] {
  const problems: string[] = [];
  for (const c of commands) {
    if (c.verb === 'help') continue;
    const verb = program.commands.find((cmd) => cmd.name() === c.verb);
    if (!verb) {
      problems.push(`${c.where}: tapline has no verb "${c.verb}"`);
      continue;
    }
    const known = new Set(['--help', ...verb.options.map((o) => o.long)]);
    for (const flag of c.flags) {
      if (!known.has(flag)) problems.push(`${c.where}: tapline ${c.verb} has no option ${flag}`);
    }
  }
  return problems;
}

/** docs/deploy.md's stage-parameter table against serverless.yml's `params.default`. */
function stageParameterProblems(deployMd: string, params: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const rows = [...deployMd.matchAll(/^\| `([A-Za-z][A-Za-z0-9]*)` \| ([^|]*) \|/gm)];
  const documented = new Set<string>();
  for (const [, name, cell] of rows) {
    documented.add(name!);
    if (!(name! in params)) {
      problems.push(`docs/deploy.md documents stage parameter ${name}, serverless.yml has none`);
      continue;
    }
    const doc = cell!.trim();
    const actual = String(params[name!]);
    const literal = /^`([^`<]*)`$/.exec(doc)?.[1];
    if (doc === 'empty' && actual !== '')
      problems.push(`${name}: documented as empty, serverless.yml says "${actual}"`);
    if (literal !== undefined && literal !== actual)
      problems.push(`${name}: documented default ${literal}, serverless.yml says "${actual}"`);
  }
  for (const name of Object.keys(params)) {
    if (!documented.has(name))
      problems.push(`serverless.yml stage parameter ${name} is not in docs/deploy.md`);
  }
  return problems;
}

/** Top-level folders a documented path may start with: tracked folders, not ignored ones. */
function trackedRoots(): Set<string> {
  const ignored = read('.gitignore')
    .split('\n')
    .map((l) => l.trim().replace(/^\//, '').replace(/\/$/, ''))
    .filter((l) => l && !l.startsWith('#'));
  return new Set(
    readdirSync(repo, { withFileTypes: true })
      .filter((d) => d.isDirectory() && !d.name.startsWith('.') && !ignored.includes(d.name))
      .map((d) => d.name),
  );
}

/**
 * Repository paths in code spans and fences (`shared/x.ts`, `test/…`): each must exist. Paths
 * with placeholders or globs (`<captureId>`, `*`, `…`) and ignored paths (generated, not in git)
 * are left out.
 */
function pathProblems(
  snippets: Snippet[],
  roots: Set<string>,
  ignored: string[],
  exists: (path: string) => boolean,
): string[] {
  const problems: string[] = [];
  for (const s of snippets) {
    for (const m of s.text.matchAll(/(?<![\w./:-])([a-z][a-z0-9_.-]*\/[A-Za-z0-9_./*<>{}…-]*)/g)) {
      const path = m[1]!.replace(/[.,;:]+$/, '');
      if (!roots.has(path.split('/')[0]!) || /[<>*{}…]/.test(path)) continue;
      if (ignored.some((prefix) => path.startsWith(prefix))) continue;
      if (!exists(path)) problems.push(`${s.file}:${s.line}: ${path} does not exist`);
    }
  }
  return problems;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -N for repeats. */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const m = fenced ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = m[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

/** Relative markdown links: the file must exist, and a #anchor must be one of its headings. */
function linkProblems(
  docs: { file: string; text: string }[],
  readDoc: (path: string) => string | undefined,
): string[] {
  const problems: string[] = [];
  for (const { file, text } of docs) {
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
      const [path, anchor] = target.split('#') as [string, string | undefined];
      const resolved = path === '' ? file : normalize(join(dirname(file), path));
      const content = readDoc(resolved);
      if (content === undefined) {
        problems.push(`${file}: link to ${target}: ${resolved} does not exist`);
        continue;
      }
      if (anchor && resolved.endsWith('.md') && !headingAnchors(content).has(anchor))
        problems.push(`${file}: link to ${target}: no heading #${anchor} in ${resolved}`);
    }
  }
  return problems;
}

async function taplineProgram(): Promise<Command> {
  const program = new Command().name('tapline').exitOverride();
  await registerEagerly(program);
  return program;
}

const snippets = DOCS.flatMap((file) => codeSnippets(read(file), file));
const ignoredPrefixes = read('.gitignore')
  .split('\n')
  .map((l) => l.trim().replace(/^\//, ''))
  .filter((l) => l.endsWith('/') && l.includes('/'));
const readIfThere = (path: string) =>
  existsSync(join(repo, path)) ? readFileSync(join(repo, path), 'utf8') : undefined;

describe('the user documentation names only what exists', () => {
  it('every `tapline <verb> --flag` in README.md and docs/ is a verb and option of the CLI', async () => {
    const commands = taplineCommands(snippets);
    // an extraction that finds nothing would pass vacuously
    expect([...new Set(commands.map((c) => c.verb))]).toEqual(
      expect.arrayContaining(['capture', 'status', 'fetch', 'summarize', 'detect']),
    );
    expect(commandProblems(commands, await taplineProgram())).toEqual([]);
  });

  it("docs/deploy.md's stage parameters are serverless.yml's, with the same defaults", () => {
    const serverless = YAML.parse(read('serverless.yml'), { logLevel: 'error' }) as {
      params: { default: Record<string, unknown> };
    };
    expect(stageParameterProblems(read('docs/deploy.md'), serverless.params.default)).toEqual([]);
  });

  it('every repository path the docs name exists', () => {
    const problems = pathProblems(snippets, trackedRoots(), ignoredPrefixes, (p) =>
      existsSync(join(repo, p)),
    );
    expect(problems).toEqual([]);
  });

  it('every relative link and #anchor resolves', () => {
    const docs = DOCS.map((file) => ({ file, text: read(file) }));
    expect(linkProblems(docs, readIfThere)).toEqual([]);
  });
});

describe('the checks fail on documentation that names what does not exist', () => {
  const doc = (text: string) => codeSnippets(text, 'docs/broken.md');

  it('an unknown option, an unknown verb, in a fence, inline, in a pipeline and a synopsis', async () => {
    const program = await taplineProgram();
    const commands = taplineCommands(
      doc(
        [
          '```sh',
          'npx tapline detect flows.log --json --no-such-flag   # comment --ignored',
          'npx tapline capture --addr 10.0.1.5 \\',
          '  --reasn "typo" --wait',
          '$ zcat x.gz | tapline detect - --jsn | jq .',
          'tapline detect: 155 records, 0 NODATA',
          '```',
          'Run `tapline sumarize x.pcap` or `tapline fetch ID [--outdir DIR]`.',
        ].join('\n'),
      ),
    );
    expect(commandProblems(commands, program)).toEqual([
      'docs/broken.md:2: tapline detect has no option --no-such-flag',
      'docs/broken.md:3: tapline capture has no option --reasn',
      'docs/broken.md:5: tapline detect has no option --jsn',
      'docs/broken.md:8: tapline has no verb "sumarize"',
      'docs/broken.md:8: tapline fetch has no option --outdir',
    ]);
  });

  it('a stage parameter serverless.yml lacks, a wrong default, an undocumented parameter', () => {
    const table = [
      '| Parameter | Default | Meaning |',
      '|---|---|---|',
      '| `objectLockDays` | `730` | retention |',
      '| `replicaKeyArn` | empty | key |',
      '| `noSuchParam` | `1` | typo |',
    ].join('\n');
    expect(
      stageParameterProblems(table, { objectLockDays: 365, replicaKeyArn: 'x', carveMode: 'off' }),
    ).toEqual([
      'objectLockDays: documented default 730, serverless.yml says "365"',
      'replicaKeyArn: documented as empty, serverless.yml says "x"',
      'docs/deploy.md documents stage parameter noSuchParam, serverless.yml has none',
      'serverless.yml stage parameter carveMode is not in docs/deploy.md',
    ]);
  });

  it('a missing path, but not placeholders, globs or ignored (generated) paths', () => {
    const problems = pathProblems(
      doc(
        '`shared/nope.ts`, `shared/config.ts`, `test/unit/pcap-*.test.ts`, `bin/commands/<verb>.ts`, `shared/flowlogs/generated/x.wasm`, `pcaps/<id>/x.pcap`',
      ),
      trackedRoots(),
      ['shared/flowlogs/generated/'],
      (p) => existsSync(join(repo, p)),
    );
    expect(problems).toEqual(['docs/broken.md:1: shared/nope.ts does not exist']);
  });

  it('a link to a missing file or heading', () => {
    const problems = linkProblems(
      [
        {
          file: 'README.md',
          text: '[a](docs/nope.md) [b](docs/pcap.md#no-such-heading) [c](docs/pcap.md#hostile-input) [d](https://example.com/x#y)',
        },
      ],
      readIfThere,
    );
    expect(problems).toEqual([
      'README.md: link to docs/nope.md: docs/nope.md does not exist',
      'README.md: link to docs/pcap.md#no-such-heading: no heading #no-such-heading in docs/pcap.md',
    ]);
  });

  it("makes GitHub's anchors from headings", () => {
    expect([
      ...headingAnchors(
        '## Performance (measured, `npm run bench flowlogs`)\n### Notes\n### Notes',
      ),
    ]).toEqual(['performance-measured-npm-run-bench-flowlogs', 'notes', 'notes-1']);
  });
});
