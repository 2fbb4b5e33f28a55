/**
 * The Glue tables in the PACKAGED template describe the files the processing job writes:
 * every declared column exists in every row with a compatible type, every field the job writes
 * is declared (top level and inside structs), and the tables' locations and partition
 * projection match the results layout. The files come from real runs of the job on moto over
 * corpus pcaps (and a few awkward cases), not from hand-written samples.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  processPcapObject,
  RESULT_TABLES,
  resultLayout,
  TABLES_PREFIX,
} from '../../shared/processing/index.ts';
import { parsePcapKey } from '../../shared/processing/layout.ts';
import {
  captureId,
  coreDeps,
  corpusFile,
  createProcessingStack,
  fixtureFile,
  getJson,
  getJsonLines,
  hostMultipartUpload,
  hostUpload,
  INSTANCE,
  type ProcessingStack,
  putCaptureManifest,
  repeatedPcap,
} from '../fixtures/processing/stack.ts';
import { motoClients } from '../support/aws.ts';
import { packagedTemplate } from '../support/template.ts';

// ---- Hive type strings → a small type tree ----
type HiveType =
  | { kind: 'string' | 'bigint' | 'double' | 'boolean' }
  | { kind: 'array'; of: HiveType }
  | { kind: 'struct'; fields: Map<string, HiveType> };

function parseHiveType(text: string): HiveType {
  let i = 0;
  const peek = () => text[i];
  const word = () => {
    const m = /^[a-z_][a-z0-9_]*/i.exec(text.slice(i));
    if (!m) throw new Error(`bad type at ${i} in ${text}`);
    i += m[0].length;
    return m[0];
  };
  const expectChar = (c: string) => {
    if (text[i] !== c) throw new Error(`expected ${c} at ${i} in ${text}`);
    i++;
  };
  const parse = (): HiveType => {
    const name = word().toLowerCase();
    if (name === 'array') {
      expectChar('<');
      const of = parse();
      expectChar('>');
      return { kind: 'array', of };
    }
    if (name === 'struct') {
      expectChar('<');
      const fields = new Map<string, HiveType>();
      for (;;) {
        const field = word();
        expectChar(':');
        fields.set(field, parse());
        if (peek() === ',') {
          i++;
          continue;
        }
        expectChar('>');
        return { kind: 'struct', fields };
      }
    }
    if (name === 'string' || name === 'bigint' || name === 'double' || name === 'boolean')
      return { kind: name };
    throw new Error(`type ${name} is not one the job writes (in ${text})`);
  };
  const t = parse();
  if (i !== text.length) throw new Error(`trailing text in ${text}`);
  return t;
}

/** Problems with `value` against `type` (empty = compatible). null is always allowed. */
function check(value: unknown, type: HiveType, path: string, problems: string[]): void {
  if (value === null) return;
  switch (type.kind) {
    case 'string':
      if (typeof value !== 'string')
        problems.push(`${path}: ${JSON.stringify(value)} is not a string`);
      return;
    case 'bigint':
      if (!Number.isSafeInteger(value))
        problems.push(`${path}: ${JSON.stringify(value)} is not a bigint`);
      return;
    case 'double':
      if (typeof value !== 'number' || !Number.isFinite(value))
        problems.push(`${path}: ${JSON.stringify(value)} is not a double`);
      return;
    case 'boolean':
      if (typeof value !== 'boolean')
        problems.push(`${path}: ${JSON.stringify(value)} is not a boolean`);
      return;
    case 'array':
      if (!Array.isArray(value)) {
        problems.push(`${path}: not an array`);
        return;
      }
      for (const [n, v] of value.entries()) check(v, type.of, `${path}[${n}]`, problems);
      return;
    case 'struct': {
      if (typeof value !== 'object' || Array.isArray(value)) {
        problems.push(`${path}: not a struct`);
        return;
      }
      const obj = value as Record<string, unknown>;
      for (const [field, t] of type.fields) {
        if (!(field in obj)) problems.push(`${path}.${field}: declared but not written`);
        else check(obj[field], t, `${path}.${field}`, problems);
      }
      for (const key of Object.keys(obj)) {
        if (!type.fields.has(key)) problems.push(`${path}.${key}: written but not declared`);
      }
    }
  }
}

/** Marks which (nested) columns ever carried a non-null value. */
function seen(value: unknown, type: HiveType, path: string, out: Set<string>): void {
  if (value === null || value === undefined) return;
  out.add(path);
  if (type.kind === 'array' && Array.isArray(value))
    for (const v of value) seen(v, type.of, `${path}[]`, out);
  if (type.kind === 'struct' && typeof value === 'object') {
    for (const [f, t] of type.fields) seen((value as any)[f], t, `${path}.${f}`, out);
  }
}

function paths(type: HiveType, path: string, out: string[]): void {
  out.push(path);
  if (type.kind === 'array') paths(type.of, `${path}[]`, out);
  if (type.kind === 'struct') for (const [f, t] of type.fields) paths(t, `${path}.${f}`, out);
}

let stack: ProcessingStack;
let glue: Map<string, { columns: Map<string, HiveType>; input: any }>;
const rows = new Map<string, Record<string, unknown>[]>(RESULT_TABLES.map((t) => [t, []]));

async function runJob(
  name: string,
  bytes: Buffer,
  options: {
    manifest?: boolean;
    hostHash?: null;
    multipart?: boolean;
    carve?: boolean;
    sentTo?: false;
  } = {},
) {
  const cap = captureId();
  const key = `pcaps/${cap}/${INSTANCE}/${name}`;
  const up = options.multipart
    ? await hostMultipartUpload(stack, key, bytes)
    : await hostUpload(stack, key, bytes, {
        ...(options.hostHash === null ? { hostHash: null } : {}),
        ...(options.sentTo === false ? { sentTo: false } : {}),
      });
  if (options.manifest) {
    await putCaptureManifest(stack, cap, {
      hosts: {
        [INSTANCE]: {
          files: [{ key, sha256: up.sha256 }],
          packetsCaptured: 50,
          packetsDroppedByKernel: 3,
        },
      },
    });
  }
  await processPcapObject(
    { bucket: stack.bucket, key, versionId: up.versionId },
    coreDeps(stack, { carveMode: options.carve ? 'all' : 'off' }),
  );
  const layout = resultLayout(parsePcapKey(key), up.versionId);
  rows.get('summary')!.push(await getJson(stack, layout.tables.summary));
  for (const table of RESULT_TABLES) {
    if (table === 'summary') continue;
    rows.get(table)!.push(...(await getJsonLines(stack, layout.tables[table])));
  }
}

beforeAll(async () => {
  // Packaging (a child process) runs while the jobs run against moto.
  const packaging = packagedTemplate();
  packaging.catch(() => undefined);
  stack = await createProcessingStack(motoClients());
  await runJob('dns.pcap', await corpusFile('dns_packets.pcap'), { manifest: true });
  await runJob('tls.pcap', await corpusFile('tls_handshake.pcap'));
  await runJob('http.pcapng', await corpusFile('http_ip4and6.pcapng'));
  await runJob('port-zero.pcap', await fixtureFile('port-zero.pcap'), {
    hostHash: null,
    carve: true,
  });
  // Two parts (5 MiB + rest): S3 stores a COMPOSITE checksum with a part count.
  await runJob(
    'big.pcap',
    repeatedPcap(await corpusFile('tls_handshake.pcap'), 5.5 * 1024 * 1024),
    {
      multipart: true,
    },
  );
  await runJob('not-a-pcap.pcap', Buffer.from('this is not a capture file at all\n'));
  // A file no capture sent a command for: its provenance says so.
  await runJob('stray.pcap', await corpusFile('dns_packets.pcap'), { sentTo: false });
  const { template } = await packaging;
  glue = new Map();
  for (const resource of Object.values(template.Resources)) {
    if (resource.Type !== 'AWS::Glue::Table') continue;
    const input = resource.Properties!.TableInput;
    const columns = new Map<string, HiveType>(
      input.StorageDescriptor.Columns.map((c: { Name: string; Type: string }) => [
        c.Name,
        parseHiveType(c.Type),
      ]),
    );
    glue.set(input.Name, { columns, input });
  }
}, 240_000);

describe('Glue tables match the files the processing job writes', () => {
  it('declares exactly one table per results table, with the JSON SerDe over its own prefix', () => {
    expect([...glue.keys()].sort()).toEqual([...RESULT_TABLES].sort());
    for (const [name, { input }] of glue) {
      const sd = input.StorageDescriptor;
      expect(sd.SerdeInfo.SerializationLibrary).toBe('org.openx.data.jsonserde.JsonSerDe');
      expect(sd.InputFormat).toBe('org.apache.hadoop.mapred.TextInputFormat');
      expect(sd.Location).toMatch(new RegExp(`^s3://[a-z0-9.-]+/${TABLES_PREFIX}${name}/$`));
      expect(input.PartitionKeys).toEqual([
        expect.objectContaining({ Name: 'dt', Type: 'string' }),
      ]);
      const p = input.Parameters;
      expect(p['projection.enabled']).toBe('true');
      expect(p['projection.dt.type']).toBe('date');
      expect(p['projection.dt.format']).toBe('yyyy-MM-dd');
      const template = p['storage.location.template']['Fn::Join'][1].join('');
      expect(template).toBe(`${sd.Location}dt=\${dt}/`);
    }
  });

  it('partitions the written objects the way the projection expects', async () => {
    const cap = rows.get('summary')![0]!.capture_id as string;
    const day = `${cap.slice(4, 8)}-${cap.slice(8, 10)}-${cap.slice(10, 12)}`;
    const layout = resultLayout(parsePcapKey(`pcaps/${cap}/${INSTANCE}/x.pcap`), 'v');
    for (const table of RESULT_TABLES) {
      expect(layout.tables[table].startsWith(`${TABLES_PREFIX}${table}/dt=${day}/`)).toBe(true);
    }
  });

  for (const table of RESULT_TABLES) {
    it(`${table}: every declared column is written with its type, every written field is declared`, () => {
      const { columns } = glue.get(table)!;
      const written = rows.get(table)!;
      expect(written.length).toBeGreaterThan(0);
      const problems: string[] = [];
      written.forEach((row, n) => {
        for (const [column, type] of columns) {
          if (!(column in row)) problems.push(`row ${n}: ${column} declared but not written`);
          else check(row[column], type, `row ${n}: ${column}`, problems);
        }
        for (const key of Object.keys(row)) {
          if (!columns.has(key)) problems.push(`row ${n}: ${key} written but not declared`);
        }
      });
      expect(problems.slice(0, 20)).toEqual([]);
      // Types were really exercised: each (nested) column carries a value somewhere.
      const valued = new Set<string>();
      for (const row of written) for (const [c, t] of columns) seen(row[c], t, c, valued);
      const all: string[] = [];
      for (const [c, t] of columns) paths(t, c, all);
      expect(all.filter((p) => !valued.has(p))).toEqual([]);
    });
  }
});
