/**
 * Output for people: tables, human sizes and times, a progress bar and a live status line, on a
 * terminal only. When the stream is not a TTY (CI, pipes) nothing here writes escape codes:
 * progress is silent and status lines are printed once each, when they change.
 */
export function humanBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export function humanDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '-';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function humanTime(value: string | number | Date | undefined | null): string {
  if (value === undefined || value === null || value === '') return '-';
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime())
    ? String(value)
    : date
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z');
}

/** A plain text table: columns padded to the widest cell, no escape codes. */
export function table(headers: string[], rows: (string | number | undefined | null)[][]): string {
  const cells = [
    headers,
    ...rows.map((r) => r.map((c) => (c === undefined || c === null ? '-' : String(c)))),
  ];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return `${cells
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

export interface Progress {
  update(done: number): void;
  finish(): void;
}

/** A progress bar on stderr when it is a terminal; silent otherwise. */
export function progressBar(
  label: string,
  total: number,
  stream: NodeJS.WriteStream = process.stderr,
): Progress {
  if (!stream.isTTY) return { update() {}, finish() {} };
  let last = -1;
  return {
    update(done) {
      const frac = total > 0 ? Math.min(1, done / total) : 1;
      const pct = Math.floor(frac * 100);
      if (pct === last) return;
      last = pct;
      const width = 30;
      const filled = Math.round(frac * width);
      stream.write(
        `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(pct).padStart(3)}% ${humanBytes(done)}`,
      );
    },
    finish() {
      stream.write('\r\x1b[K');
    },
  };
}

/** A status line that rewrites itself on a terminal and prints only changes elsewhere. */
export function statusLine(stream: NodeJS.WriteStream = process.stderr): {
  show(text: string): void;
  done(): void;
} {
  let previous = '';
  return {
    show(text) {
      if (text === previous) return;
      previous = text;
      if (stream.isTTY) stream.write(`\r\x1b[K${text}`);
      else stream.write(`${text}\n`);
    },
    done() {
      if (stream.isTTY && previous) stream.write('\n');
    },
  };
}
