import { isIP } from 'node:net';
import { InvalidFilterError } from '../errors.ts';

/**
 * Capture filters: a structured filter (hosts/CIDRs, ports, protocols, direction) compiled to
 * BPF by us, or a raw BPF expression checked token by token against a strict grammar.
 *
 * The checked expression reaches tcpdump through a file (`-F`) on the host, never through a
 * shell, but we still refuse anything that is not plainly BPF: no host names (no DNS lookups on
 * the host), no port or protocol names (no /etc/services surprises), no backslash escapes, no
 * shell metacharacters, nothing that could be read as a tcpdump option.
 */

/** Longest raw expression we accept (the SSM parameter pattern allows the same length). */
export const MAX_FILTER_LENGTH = 1024;

const KEYWORDS = new Set([
  // qualifiers
  'host',
  'net',
  'port',
  'portrange',
  'src',
  'dst',
  'gateway',
  'mask',
  'proto',
  'broadcast',
  'multicast',
  'less',
  'greater',
  'len',
  'inbound',
  'outbound',
  // protocols / link types
  'ether',
  'ip',
  'ip6',
  'arp',
  'rarp',
  'tcp',
  'udp',
  'icmp',
  'icmp6',
  'igmp',
  'sctp',
  'vlan',
  'mpls',
  'pppoed',
  'pppoes',
  'geneve',
  'vxlan',
  'ah',
  'esp',
  'gre',
  // boolean words
  'and',
  'or',
  'not',
  // named header fields and constants usable in byte-offset expressions
  'tcpflags',
  'icmptype',
  'icmpcode',
  'icmp6type',
  'icmp6code',
  'tcp-fin',
  'tcp-syn',
  'tcp-rst',
  'tcp-push',
  'tcp-ack',
  'tcp-urg',
  'tcp-ece',
  'tcp-cwr',
  'icmp-echoreply',
  'icmp-unreach',
  'icmp-sourcequench',
  'icmp-redirect',
  'icmp-echo',
  'icmp-routeradvert',
  'icmp-routersolicit',
  'icmp-timxceed',
  'icmp-paramprob',
  'icmp-tstamp',
  'icmp-tstampreply',
  'icmp-ireq',
  'icmp-ireqreply',
  'icmp-maskreq',
  'icmp-maskreply',
]);

const OPERATORS = [
  '&&',
  '||',
  '==',
  '!=',
  '<=',
  '>=',
  '<<',
  '>>',
  '(',
  ')',
  '[',
  ']',
  '!',
  '<',
  '>',
  '=',
  '+',
  '-',
  '*',
  '/',
  '&',
  '|',
  ':',
];

export interface BpfToken {
  kind: 'keyword' | 'operator' | 'number' | 'address' | 'cidr' | 'mac';
  text: string;
  position: number;
}

function fail(message: string, token: string, position: number): never {
  throw new InvalidFilterError(message, { part: 'filter.expression', token, position });
}

const MAC = /^[0-9a-f]{2}([:.-][0-9a-f]{2}){5}$/i;

/** An IPv4 dotted quad with every octet ≤ 255 (no shorthand like `10.1`). */
function isFullIpv4(text: string): boolean {
  return isIP(text) === 4 && text.split('.').length === 4;
}

function classifyAddress(text: string, position: number): BpfToken {
  const [addr, bits, extra] = text.split('/');
  if (extra !== undefined || addr === undefined)
    fail(`"${text}" is not an address`, text, position);
  if (MAC.test(addr) && bits === undefined) return { kind: 'mac', text, position };
  const family = isFullIpv4(addr) ? 4 : isIP(addr) === 6 ? 6 : 0;
  if (family === 0) fail(`"${text}" is not an IPv4/IPv6 address or MAC`, text, position);
  if (bits === undefined) return { kind: 'address', text, position };
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128)) {
    fail(`"${text}" has a bad prefix length`, text, position);
  }
  return { kind: 'cidr', text, position };
}

/**
 * Splits a raw BPF expression into tokens, refusing anything outside the grammar. Throws
 * InvalidFilterError with `details.token` and `details.position` (0-based character index).
 */
export function tokenizeBpf(expression: string): BpfToken[] {
  if (expression.length === 0) fail('the filter is empty', '', 0);
  if (expression.length > MAX_FILTER_LENGTH) {
    fail(
      `the filter is ${expression.length} characters; at most ${MAX_FILTER_LENGTH} are allowed`,
      expression.slice(MAX_FILTER_LENGTH, MAX_FILTER_LENGTH + 16),
      MAX_FILTER_LENGTH,
    );
  }
  const tokens: BpfToken[] = [];
  let i = 0;
  let bracketDepth = 0;
  while (i < expression.length) {
    const ch = expression[i]!;
    const code = ch.charCodeAt(0);
    if (ch === ' ') {
      i++;
      continue;
    }
    if (code < 0x20 || code > 0x7e) {
      fail(
        `character U+${code.toString(16).padStart(4, '0').toUpperCase()} at ${i} is not allowed (printable ASCII and spaces only)`,
        ch,
        i,
      );
    }
    // Addresses, CIDRs, MACs (contain '.' or ':' between hex/decimal digits); outside [ ] only,
    // where ':' is the byte-offset size separator (tcp[13:1]).
    const addressMatch =
      bracketDepth === 0
        ? /^[0-9a-fA-F:.]*[.:][0-9a-fA-F:.]*(\/\d+)?/.exec(expression.slice(i))
        : null;
    if (addressMatch && /[0-9a-fA-F]/.test(addressMatch[0]) && addressMatch[0].length > 1) {
      const text = addressMatch[0];
      tokens.push(classifyAddress(text, i));
      i += text.length;
      continue;
    }
    const numberMatch = /^(0x[0-9a-fA-F]+|\d+)/.exec(expression.slice(i));
    if (numberMatch) {
      const after = expression[i + numberMatch[0].length];
      if (after !== undefined && /[A-Za-z_]/.test(after)) {
        const bad = /^[\w-]+/.exec(expression.slice(i))![0];
        fail(`"${bad}" at ${i} is not a number or BPF keyword`, bad, i);
      }
      tokens.push({ kind: 'number', text: numberMatch[0], position: i });
      i += numberMatch[0].length;
      continue;
    }
    const wordMatch = /^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*/.exec(expression.slice(i));
    if (wordMatch) {
      const word = wordMatch[0];
      const lower = word.toLowerCase();
      if (!KEYWORDS.has(lower)) {
        fail(
          `"${word}" at ${i} is not a BPF keyword (host and port names are not accepted: use addresses and numbers)`,
          word,
          i,
        );
      }
      tokens.push({ kind: 'keyword', text: lower, position: i });
      i += word.length;
      continue;
    }
    const op = OPERATORS.find((o) => expression.startsWith(o, i));
    if (op) {
      if (op === '[') bracketDepth++;
      if (op === ']') bracketDepth--;
      tokens.push({ kind: 'operator', text: op, position: i });
      i += op.length;
      continue;
    }
    fail(`"${ch}" at ${i} is not allowed in a BPF filter`, ch, i);
  }
  return tokens;
}

/**
 * The strict raw-BPF check. Returns the expression (trimmed) that the host writes to its filter
 * file; throws InvalidFilterError naming the bad part (`details.token`, `details.position`).
 */
export function checkBpfExpression(expression: string): string {
  if (/^\s*-/.test(expression)) {
    fail('a filter must not start with "-" (it would be read as a tcpdump option)', '-', 0);
  }
  const tokens = tokenizeBpf(expression);
  const stack: BpfToken[] = [];
  for (const token of tokens) {
    if (token.text === '(' || token.text === '[') stack.push(token);
    if (token.text === ')' || token.text === ']') {
      const open = stack.pop();
      const want = token.text === ')' ? '(' : '[';
      if (!open || open.text !== want) {
        fail(`unbalanced "${token.text}" at ${token.position}`, token.text, token.position);
      }
    }
  }
  const unclosed = stack.pop();
  if (unclosed) {
    fail(
      `"${unclosed.text}" at ${unclosed.position} is never closed`,
      unclosed.text,
      unclosed.position,
    );
  }
  const first = tokens[0]!;
  // the capture document's Filter pattern starts with [a-zA-Z0-9(!]: an address like ::1
  // (IPv6 shorthand) is a token of its own but cannot open the filter
  if (!/^[A-Za-z0-9(!]/.test(first.text)) {
    fail(
      `a filter cannot start with "${first.text}" (start with a keyword, a number, "(" or "!", e.g. "host ${first.text}")`,
      first.text,
      first.position,
    );
  }
  if (first.kind === 'operator' && first.text !== '(' && first.text !== '!') {
    fail(`a filter cannot start with "${first.text}"`, first.text, first.position);
  }
  if (first.text === 'and' || first.text === 'or') {
    fail(`a filter cannot start with "${first.text}"`, first.text, first.position);
  }
  const last = tokens.at(-1)!;
  const dangling = ['and', 'or', 'not'].includes(last.text);
  if (dangling || (last.kind === 'operator' && last.text !== ')' && last.text !== ']')) {
    fail(`a filter cannot end with "${last.text}"`, last.text, last.position);
  }
  for (let k = 1; k < tokens.length; k++) {
    const prev = tokens[k - 1]!;
    const cur = tokens[k]!;
    const binary = (t: BpfToken) => ['&&', '||'].includes(t.text) || ['and', 'or'].includes(t.text);
    if (binary(prev) && binary(cur)) {
      fail(`"${prev.text} ${cur.text}" at ${cur.position} is not valid`, cur.text, cur.position);
    }
  }
  // The original text, not a re-join of tokens: `portrange 1-5` must stay one lexeme for libpcap.
  return expression.trim();
}

export interface StructuredFilterInput {
  hosts: string[];
  ports: number[];
  portRanges: { from: number; to: number }[];
  protocols: string[];
  direction: 'both' | 'src' | 'dst';
}

const PROTOCOL_BPF: Record<string, string> = {
  tcp: 'tcp',
  udp: 'udp',
  icmp: 'icmp',
  icmp6: 'icmp6',
  gre: '(ip proto 47 or ip6 proto 47)',
  esp: '(ip proto 50 or ip6 proto 50)',
  'ipv6-in-ipv4': 'ip proto 41',
};

const PORT_PROTOCOLS = new Set(['tcp', 'udp']);

function anyOf(parts: string[]): string | undefined {
  if (parts.length === 0) return undefined;
  return parts.length === 1 ? parts[0] : `(${parts.join(' or ')})`;
}

/**
 * Compiles a structured filter to BPF: (any host) and (any protocol, with any port/range applied
 * to the protocols that have ports), each term qualified by direction. An empty filter compiles
 * to "" (capture everything). Ports with only port-less protocols (icmp, gre, esp) are refused:
 * libpcap would accept that filter and then reject every packet.
 * The output always passes checkBpfExpression.
 */
export function compileStructuredFilter(filter: StructuredFilterInput): string {
  const dir = filter.direction === 'both' ? '' : `${filter.direction} `;
  const hostTerms = filter.hosts.map((h) => {
    const [addr, bits] = h.split('/');
    const full = bits === undefined || Number(bits) === (isIP(addr!) === 4 ? 32 : 128);
    return full ? `${dir}host ${addr}` : `${dir}net ${h}`;
  });
  const portTerms = [
    ...filter.ports.map((p) => `${dir}port ${p}`),
    ...filter.portRanges.map((r) =>
      r.from === r.to ? `${dir}port ${r.from}` : `${dir}portrange ${r.from}-${r.to}`,
    ),
  ];
  for (const p of filter.protocols) {
    if (!PROTOCOL_BPF[p]) {
      throw new InvalidFilterError(`unknown protocol ${p}`, { part: 'filter.protocols', token: p });
    }
  }
  const withPorts = filter.protocols.filter((p) => PORT_PROTOCOLS.has(p));
  const portless = filter.protocols.filter((p) => !PORT_PROTOCOLS.has(p));
  let trafficClause: string | undefined;
  if (portTerms.length === 0) {
    trafficClause = anyOf(filter.protocols.map((p) => PROTOCOL_BPF[p]!));
  } else if (filter.protocols.length === 0) {
    trafficClause = anyOf(portTerms);
  } else if (withPorts.length === 0) {
    // libpcap would compile "port 53 and icmp" to a filter that rejects every packet.
    throw new InvalidFilterError(
      `ports were given but none of the protocols (${filter.protocols.join(', ')}) has ports: add tcp or udp`,
      { part: 'filter.protocols', token: filter.protocols[0] },
    );
  } else {
    // Ports constrain the protocols that have them; port-less protocols are captured whole.
    const ported = `${anyOf(withPorts.map((p) => PROTOCOL_BPF[p]!))} and ${anyOf(portTerms)}`;
    trafficClause =
      portless.length === 0
        ? ported
        : `((${ported}) or ${anyOf(portless.map((p) => PROTOCOL_BPF[p]!))})`;
  }
  const clauses = [anyOf(hostTerms), trafficClause].filter((c): c is string => c !== undefined);
  if (clauses.length === 0) return '';
  const expression = clauses.join(' and ');
  return checkBpfExpression(expression);
}

/** The BPF expression a request's filter turns into ("" when there is none). */
export function filterToBpf(
  filter:
    | ({ kind: 'structured' } & StructuredFilterInput)
    | { kind: 'bpf'; expression: string }
    | undefined,
): string {
  if (!filter) return '';
  return filter.kind === 'bpf'
    ? checkBpfExpression(filter.expression)
    : compileStructuredFilter(filter);
}
