// npm run scan: package the stack offline and scan the CloudFormation template it deploys with
// cfn-lint and cfn-guard (the AWS Control Tower proactive controls bundled with
// @cdklabs/cdk-validator-cfnguard, plus Tapline's own rules in scan/guard/). Every finding must
// be fixed or listed in scan/allowlist.json with the rule, the resources and why.
//
//   node scripts/scan.ts                      package, then scan it and resources/replica-stack.yml
//   node scripts/scan.ts --template FILE      scan an existing stack template (no packaging)
//   node scripts/scan.ts --replica FILE       scan a replica-stack template (no packaging)
//   node scripts/scan.ts --json               machine-readable report on stdout
//
// Exit codes: 0 clean (every finding allowlisted), 1 findings or stale allowlist entries,
// 3 a tool is missing or failed.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { PACKAGE_LOCK } from '../shared/lab/packaged-template.ts';

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const repoRoot = new URL('../', import.meta.url).pathname;
const allowlistPath = join(repoRoot, 'scan', 'allowlist.json');
/** The replica bucket's own template (deployed separately in another region). */
const replicaTemplate = join(repoRoot, 'resources', 'replica-stack.yml');
/** Tapline guard rules per template kind, run next to the Control Tower rules. */
const stackRules = join(repoRoot, 'scan', 'guard', 'stack');
const replicaRules = join(repoRoot, 'scan', 'guard', 'replica');

export interface ScanTarget {
  kind: 'stack' | 'replica';
  template: string;
  /** Tapline rule directory for this template. */
  rules: string;
}

export interface Finding {
  tool: 'cfn-lint' | 'cfn-guard';
  /** cfn-lint rule id (W3005) or Control Tower / Tapline control id (CT.S3.PR.1, TAPLINE.S3.1). */
  rule: string;
  resource: string;
  message: string;
  template: string;
  kind?: ScanTarget['kind'];
}

interface AllowlistEntry {
  /** Which template the entry is about (default: the packaged stack). */
  template?: ScanTarget['kind'];
  tool: Finding['tool'];
  rule: string;
  resources: string[];
  why: string;
}

class ScanToolError extends Error {}

async function packageTemplate(): Promise<{ template: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'tapline-scan-'));
  const serverless = join(repoRoot, 'node_modules', '.bin', 'serverless');
  try {
    // Same cross-process lock as shared/lab/packaged-template.ts: serverless-esbuild builds in
    // the repo's .esbuild/ and .serverless/, so concurrent packagings clobber each other.
    const args = ['package', '--stage', 'ci', '--region', 'us-east-1', '--package', dir];
    await run('flock', [PACKAGE_LOCK, serverless, ...args], {
      cwd: repoRoot,
      timeout: 600_000,
      maxBuffer: 32 * 1024 * 1024,
    });
  } catch (error) {
    throw new ScanToolError(`serverless package failed: ${(error as Error).message}`);
  }
  return {
    template: join(dir, 'cloudformation-template-update-stack.json'),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

interface CfnLintMatch {
  Rule: { Id: string };
  Message: string;
  Level: string;
  Filename: string;
  Location: { Path?: (string | number)[] };
}

async function cfnLint(templates: string[]): Promise<Finding[]> {
  let stdout: string;
  try {
    ({ stdout } = await run('cfn-lint', ['--format', 'json', '--', ...templates], {
      maxBuffer: 32 * 1024 * 1024,
      timeout: 300_000,
    }));
  } catch (error) {
    const e = error as { code?: unknown; stdout?: string; message: string };
    // cfn-lint exits non-zero when it finds something; a missing binary has no stdout.
    if (typeof e.code !== 'number' || !e.stdout)
      throw new ScanToolError(`cfn-lint could not run (is it on PATH?): ${e.message}`);
    stdout = e.stdout;
  }
  const matches = JSON.parse(stdout || '[]') as CfnLintMatch[];
  return matches.map((m) => {
    const path = m.Location?.Path ?? [];
    return {
      tool: 'cfn-lint',
      rule: m.Rule.Id,
      resource: path[0] === 'Resources' ? String(path[1]) : path.map(String).join('/') || '-',
      message: m.Message,
      template: m.Filename,
    };
  });
}

interface GuardViolation {
  ruleName: string;
  description: string;
  fix: string;
  violatingResources: { resourceLogicalId: string; templatePath: string }[];
}

function guardBinary(): string {
  const { CfnGuardValidator } = require('@cdklabs/cdk-validator-cfnguard/lib/plugin.js');
  const platform = CfnGuardValidator.getPlatform();
  const arch = CfnGuardValidator.getArchitecture();
  const pkgDir = join(require.resolve('@cdklabs/cdk-validator-cfnguard/package.json'), '..');
  return join(pkgDir, 'bin', platform, arch, 'cfn-guard');
}

function cfnGuard(templates: string[], rules: string): Finding[] {
  const binary = guardBinary();
  if (!existsSync(binary)) throw new ScanToolError(`cfn-guard binary missing at ${binary}`);
  // The package's validator runs its bundled cfn-guard binary with the Control Tower rules
  // (controlTowerRulesEnabled defaults to true) plus ours, and turns guard's JSON into one
  // violation per rule and resource.
  const { CfnGuardValidator } = require('@cdklabs/cdk-validator-cfnguard');
  const validator = new CfnGuardValidator({ rules: [rules] });
  let report: { success: boolean; violations: GuardViolation[] };
  try {
    report = validator.validate({ templatePaths: templates });
  } catch (error) {
    throw new ScanToolError(`cfn-guard failed: ${(error as Error).message}`);
  }
  const findings: Finding[] = [];
  for (const v of report.violations) {
    const id = /\[((?:CT|TAPLINE)\.[A-Z0-9.]+)\]/.exec(v.description)?.[1] ?? v.ruleName;
    for (const r of v.violatingResources) {
      findings.push({
        tool: 'cfn-guard',
        rule: id,
        resource: r.resourceLogicalId,
        message: v.description.replace(/^\[[^\]]+\]:\s*/, ''),
        template: r.templatePath,
      });
    }
  }
  if (!report.success && findings.length === 0)
    throw new ScanToolError('cfn-guard reported failure without violations');
  return findings;
}

async function loadAllowlist(): Promise<AllowlistEntry[]> {
  const raw = JSON.parse(await readFile(allowlistPath, 'utf8')) as { entries: AllowlistEntry[] };
  for (const e of raw.entries) {
    if (!e.tool || !e.rule || !Array.isArray(e.resources) || e.resources.length === 0)
      throw new ScanToolError(`scan/allowlist.json: entry needs tool, rule and resources`);
    if (!e.why || e.why.trim().length < 20)
      throw new ScanToolError(`scan/allowlist.json: ${e.rule} needs a real "why"`);
  }
  return raw.entries;
}

export interface ScanReport {
  templates: string[];
  findings: (Finding & { allowlisted?: string })[];
  open: Finding[];
  stale: { tool: string; rule: string; resource: string }[];
  seconds: number;
}

export async function scan(targets: ScanTarget[]): Promise<ScanReport> {
  const templates = targets.map((t) => t.template);
  const started = performance.now();
  const allowlist = await loadAllowlist();
  const [lint, guard] = await Promise.all([
    cfnLint(templates),
    Promise.resolve(targets.flatMap((t) => cfnGuard([t.template], t.rules))),
  ]);
  const kindOf = (template: string) =>
    targets.find((t) => resolve(t.template) === resolve(template))?.kind ?? 'stack';
  const matches = (e: AllowlistEntry, f: Finding) =>
    (e.template ?? 'stack') === f.kind && e.tool === f.tool && e.rule === f.rule;
  const findings = [...lint, ...guard].map((raw) => {
    const f = { ...raw, kind: kindOf(raw.template) };
    const entry = allowlist.find((e) => matches(e, f) && e.resources.includes(f.resource));
    return entry ? { ...f, allowlisted: entry.why } : f;
  });
  const scanned = new Set(targets.map((t) => t.kind));
  const stale = allowlist
    .filter((e) => scanned.has(e.template ?? 'stack'))
    .flatMap((e) =>
      e.resources
        .filter((r) => !findings.some((f) => matches(e, f) && f.resource === r))
        .map((resource) => ({ tool: e.tool, rule: e.rule, resource })),
    );
  return {
    templates,
    findings,
    open: findings.filter((f) => !('allowlisted' in f)),
    stale,
    seconds: (performance.now() - started) / 1000,
  };
}

function printReport(report: ScanReport): void {
  const tty = process.stdout.isTTY;
  const paint = (code: string, s: string) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
  console.log(`scan: ${report.templates.join(', ')}`);
  const allowed = report.findings.filter((f) => 'allowlisted' in f);
  console.log(`\nallowlisted (${allowed.length}, scan/allowlist.json):`);
  const groups = new Map<string, string[]>();
  for (const f of allowed) {
    const key = `${f.tool} ${f.rule}\u0000${f.allowlisted}`;
    groups.set(key, [...(groups.get(key) ?? []), f.resource]);
  }
  for (const [key, resources] of groups) {
    const [rule, why] = key.split('\u0000');
    console.log(`  ${rule}: ${resources.join(', ')}\n      why: ${why}`);
  }
  console.log(`\nfindings (${report.open.length}):`);
  for (const f of report.open)
    console.log(paint('31', `  ${f.tool} ${f.rule} ${f.resource}: ${f.message}`));
  if (report.stale.length) {
    console.log(`\nstale allowlist entries (${report.stale.length}), remove them:`);
    for (const s of report.stale) console.log(paint('33', `  ${s.tool} ${s.rule} ${s.resource}`));
  }
  const ok = report.open.length === 0 && report.stale.length === 0;
  console.log(
    `\n${ok ? paint('32', 'scan: clean') : paint('31', 'scan: FAILED')} (${report.findings.length} findings, ${allowed.length} allowlisted, ${report.seconds.toFixed(1)}s)`,
  );
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      template: { type: 'string', multiple: true },
      replica: { type: 'string', multiple: true },
      json: { type: 'boolean' },
    },
  });
  let cleanup = async () => {};
  let targets: ScanTarget[] = [
    ...(values.template ?? []).map((template) => ({
      template,
      kind: 'stack' as const,
      rules: stackRules,
    })),
    ...(values.replica ?? []).map((template) => ({
      template,
      kind: 'replica' as const,
      rules: replicaRules,
    })),
  ];
  try {
    if (targets.length === 0) {
      const packaged = await packageTemplate();
      cleanup = packaged.cleanup;
      targets = [
        { kind: 'stack', template: packaged.template, rules: stackRules },
        { kind: 'replica', template: replicaTemplate, rules: replicaRules },
      ];
    }
    const report = await scan(targets);
    if (values.json) console.log(JSON.stringify(report, null, 2));
    else printReport(report);
    return report.open.length === 0 && report.stale.length === 0 ? 0 : 1;
  } catch (error) {
    console.error(`scan: ${(error as Error).message}`);
    return 3;
  } finally {
    await cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await main();
