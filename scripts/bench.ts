// `npm run bench [name…]`: runs every scripts/bench/<name>.ts (or the ones named) one after
// another, each in its own Node process so their peak RSS figures do not mix.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = join(dirname(fileURLToPath(import.meta.url)), 'bench');
const wanted = process.argv.slice(2);
const suites = readdirSync(dir)
  .filter((f) => f.endsWith('.ts'))
  .map((f) => f.replace(/\.ts$/, ''))
  .filter((name) => wanted.length === 0 || wanted.includes(name))
  .sort();

if (suites.length === 0) {
  console.error(`bench: no suites${wanted.length ? ` named ${wanted.join(', ')}` : ''} in ${dir}`);
  process.exit(2);
}

let failed = 0;
for (const suite of suites) {
  console.log(`\n=== bench: ${suite} ===`);
  const result = spawnSync(process.execPath, [join(dir, `${suite}.ts`)], { stdio: 'inherit' });
  if (result.status !== 0) failed += 1;
}
process.exit(failed === 0 ? 0 : 1);
