/**
 * IAM policy simulation for template tests: resolve the CloudFormation intrinsics a policy uses
 * to concrete values, then ask @cloud-copilot/iam-simulate what AWS would decide for one request
 * (identity policy + resource policy, the request's context keys as S3 builds them).
 */
import { runSimulation } from '@cloud-copilot/iam-simulate';

export interface IntrinsicValues {
  /** `Fn::GetAtt` results by `LogicalId.Attribute`. */
  getAtt: Record<string, string>;
  /** `Ref` and `Fn::Sub` variables by name (parameters, pseudo parameters). */
  refs: Record<string, string>;
}

/** Resolves Fn::GetAtt, Fn::Join, Fn::Sub (string form) and Ref; anything unknown throws. */
export function resolveIntrinsics(value: unknown, known: IntrinsicValues): unknown {
  if (Array.isArray(value)) return value.map((v) => resolveIntrinsics(v, known));
  if (!value || typeof value !== 'object') return value;
  const entries = Object.entries(value as Record<string, unknown>);
  const [fn, arg] = entries.length === 1 ? entries[0]! : [undefined, undefined];
  const lookup = (table: Record<string, string>, name: string, what: string) => {
    if (!(name in table)) throw new Error(`unresolved ${what} ${name}`);
    return table[name]!;
  };
  switch (fn) {
    case 'Fn::GetAtt':
      return lookup(known.getAtt, (arg as string[]).join('.'), 'GetAtt');
    case 'Ref':
      return lookup(known.refs, String(arg), 'Ref');
    case 'Fn::Join': {
      const [separator, parts] = arg as [string, unknown[]];
      return parts.map((p) => String(resolveIntrinsics(p, known))).join(separator);
    }
    case 'Fn::Sub':
      if (typeof arg === 'string') {
        return arg.replace(/\$\{([^}]+)\}/g, (_, name: string) => lookup(known.refs, name, 'Sub'));
      }
  }
  return Object.fromEntries(entries.map(([k, v]) => [k, resolveIntrinsics(v, known)]));
}

export interface SimulatedRequest {
  principal: string;
  action: string;
  resource: string;
  accountId: string;
  /** Context keys of the request; aws:SecureTransport true and s3:TlsVersion 1.3 by default. */
  context?: Record<string, string>;
}

/** AWS's decision: Allowed, ExplicitlyDenied or ImplicitlyDenied. */
export async function simulate(
  request: SimulatedRequest,
  identityPolicy: unknown,
  resourcePolicy: unknown,
): Promise<string> {
  const response = await runSimulation(
    {
      request: {
        principal: request.principal,
        action: request.action,
        resource: { resource: request.resource, accountId: request.accountId },
        contextVariables: {
          'aws:SecureTransport': 'true',
          's3:TlsVersion': '1.3',
          ...request.context,
        },
      },
      identityPolicies: [{ name: 'identity', policy: identityPolicy as any }],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      resourcePolicy: resourcePolicy as any,
    },
    {},
  );
  if (response.resultType === 'error') throw new Error(JSON.stringify(response.errors));
  return response.overallResult;
}
