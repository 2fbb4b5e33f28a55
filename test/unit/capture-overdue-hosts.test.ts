import { describe, expect, it } from 'vitest';
import { renderList } from '../../bin/commands/list.ts';
import { renderStatus } from '../../bin/commands/status.ts';
import {
  type CaptureManifest,
  type ManifestHost,
  overdueHosts,
} from '../../shared/evidence/manifest.ts';

// A host that never reported stays "running" in its manifest until the timed-out sweep closes
// it, and the sweep cannot close it when the host's lock is damaged: the CLI says so.

const now = new Date('2026-11-23T12:00:00Z');
const at = (seconds: number) => new Date(now.getTime() + seconds * 1000).toISOString();

function host(status: ManifestHost['status'], deadline?: string): ManifestHost {
  return { status, files: [], errors: [], ...(deadline ? { deadline } : {}) };
}

/** A running capture on the given hosts (a factory, not a stored manifest). */
function manifestWith(hosts: Record<string, ManifestHost>): CaptureManifest {
  return {
    version: 1,
    captureId: 'cap-20261123T113000Z-0a1b2c3d',
    state: 'running',
    createdAt: at(-1800),
    updatedAt: at(-1700),
    request: {},
    requestedBy: 'responder',
    source: 'manual',
    reason: 'IR-9 host went quiet',
    limits: { durationSeconds: 300, maxMegabytes: 100, bpf: '' },
    targets: Object.keys(hosts).map((instanceId) => ({ instanceId, why: 'named' })),
    refused: [],
    ssm: { commandIds: ['c-1'], documentName: 'Tapline-Capture' },
    hosts,
    history: [],
  };
}

describe('overdue capture hosts', () => {
  it('are the hosts not yet terminal whose report deadline has passed', () => {
    const m = manifestWith({
      'i-0000000000000000a': host('running', at(-60)),
      'i-0000000000000000b': host('uploading', at(-1)),
      'i-0000000000000000c': host('running', at(60)),
      'i-0000000000000000d': host('timed-out', at(-600)),
      'i-0000000000000000e': host('success', at(-600)),
      'i-0000000000000000f': host('pending'),
      'i-00000000000000010': host('running', 'not a time'),
    });
    expect(overdueHosts(m, now)).toEqual([
      { instanceId: 'i-0000000000000000a', deadline: at(-60) },
      { instanceId: 'i-0000000000000000b', deadline: at(-1) },
    ]);
    // exactly at the deadline it is not overdue yet
    expect(
      overdueHosts(manifestWith({ 'i-0000000000000000a': host('running', at(0)) }), now),
    ).toEqual([]);
  });

  it('status and list say so; the manifest itself is not changed', () => {
    const m = manifestWith({
      'i-0000000000000000a': host('running', at(-60)),
      'i-0000000000000000c': host('running', at(60)),
    });
    const before = structuredClone(m);
    const status = renderStatus(m, now);
    expect(status).toMatch(/^state {5}running \(1 host\(s\) overdue: no report by their deadline/m);
    expect(status).toMatch(/i-0000000000000000a\s+running \(overdue since /);
    expect(status).not.toMatch(/i-0000000000000000c\s+running \(overdue/);
    expect(renderList([m], now)).toMatch(/running \(overdue\)/);
    expect(m).toEqual(before);
    // before the deadline nothing is flagged
    const early = new Date(now.getTime() - 3600_000);
    expect(renderStatus(m, early)).not.toMatch(/overdue/);
    expect(renderList([m], early)).not.toMatch(/overdue/);
  });
});
