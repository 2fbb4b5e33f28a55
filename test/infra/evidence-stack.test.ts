// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the expected values are CloudFormation Fn::Sub strings
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/config.ts';
import { loadRules } from '../../shared/rules/config.ts';
import { type PackagedTemplate, packagedTemplate } from '../support/template.ts';

// Every property the stack promises, asserted on the template `serverless package` writes (what
// CloudFormation deploys), never on the YAML source.

type Resource = PackagedTemplate['template']['Resources'][string];
type Statement = {
  Sid?: string;
  Effect: string;
  Principal?: unknown;
  Action: string | string[];
  Resource?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
};

let pkg: PackagedTemplate;
let resources: Record<string, Resource>;

const RULES_OVERRIDE = '{"rules":{"port-scan":{"distinctPorts":50}}}';
/** One more packaging with every tunable this file checks, so the params are shown to flow. */
const TUNED = {
  objectLockMode: 'COMPLIANCE',
  objectLockDays: '30',
  processorTimeoutSeconds: '600',
  processingVisibilityTimeoutSeconds: '3600',
  requireCaptureHostTag: 'true',
  rulesOverride: RULES_OVERRIDE,
};
let tuned: PackagedTemplate;
const tunedTemplate = async () => tuned;

beforeAll(async () => {
  [pkg, tuned] = await Promise.all([packagedTemplate(), packagedTemplate('ci', TUNED)]);
  resources = pkg.template.Resources;
}, 300_000);

function res(id: string): Resource {
  const r = resources[id];
  if (!r) throw new Error(`packaged template has no ${id}`);
  return r;
}
function props(id: string): Record<string, any> {
  return res(id).Properties ?? {};
}
const list = <T>(v: T | T[] | undefined): T[] =>
  v === undefined ? [] : Array.isArray(v) ? v : [v];
const json = (v: unknown) => JSON.stringify(v);
const getAtt = (id: string, attr = 'Arn') => ({ 'Fn::GetAtt': [id, attr] });

const FUNCTIONS = {
  detectFlowAnomalies: 'DetectFlowAnomalies',
  startCapture: 'StartCapture',
  rollingCapture: 'RollingCapture',
  trackCapture: 'TrackCapture',
  processPcap: 'ProcessPcap',
} as const;

function roleStatements(roleId: string): Statement[] {
  return props(roleId).Policies.flatMap((p: any) =>
    p.PolicyDocument.Statement.flatMap((s: any) =>
      // Fn::If [condition, statement, statement | NoValue]: both branches are possible policy.
      s['Fn::If'] ? s['Fn::If'].slice(1).filter((b: any) => b.Effect) : [s],
    ),
  );
}
function actionsOn(statements: Statement[], matcher: (resource: string) => boolean): string[] {
  return statements
    .filter((s) => s.Effect === 'Allow' && list(s.Resource).some((r) => matcher(json(r))))
    .flatMap((s) => list(s.Action));
}
function allActions(statements: Statement[]): string[] {
  return statements.filter((s) => s.Effect === 'Allow').flatMap((s) => list(s.Action));
}

describe('KMS evidence key', () => {
  it('rotates and is retained', () => {
    expect(props('EvidenceKey').EnableKeyRotation).toBe(true);
    expect(res('EvidenceKey').DeletionPolicy).toBe('Retain');
    expect(props('EvidenceKeyAlias').AliasName).toBe('alias/tapline-ci-evidence');
  });

  it('gives account principals data-plane use only through S3 and SNS, and no kms:*', () => {
    const statements: Statement[] = props('EvidenceKey').KeyPolicy.Statement;
    expect(statements.flatMap((s) => list(s.Action))).not.toContain('kms:*');
    const admin = statements.find((s) => s.Sid === 'AccountKeyAdministration');
    expect(list(admin?.Action)).not.toEqual(
      expect.arrayContaining(['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey']),
    );
    const viaServices = statements.find((s) => s.Sid === 'AccountUseThroughS3AndSns');
    expect(json(viaServices?.Condition?.StringEquals?.['kms:ViaService'])).toContain('s3.');
    expect(json(viaServices?.Condition?.StringEquals?.['kms:ViaService'])).toContain('sns.');
    expect(viaServices?.Condition?.StringEquals?.['kms:CallerAccount']).toEqual({
      Ref: 'AWS::AccountId',
    });
  });

  it("scopes direct use to the stack's roles by name", () => {
    const statements: Statement[] = props('EvidenceKey').KeyPolicy.Statement;
    const roles = statements.find((s) => s.Sid === 'StackRolesUse');
    expect(json(roles?.Condition?.ArnLike?.['aws:PrincipalArn'])).toContain(
      ':role/tapline-ci-${AWS::Region}-*',
    );
    for (const id of Object.values(FUNCTIONS))
      expect(props(`${id}Role`).RoleName).toMatch(/^tapline-ci-us-east-1-/);
  });

  it('names exactly the services that need it: CloudWatch Logs (stack log groups) and CloudWatch alarms', () => {
    const statements: Statement[] = props('EvidenceKey').KeyPolicy.Statement;
    const services = statements
      .filter((s) => s.Effect === 'Allow' && json(s.Principal).includes('Service'))
      .map((s) => json(s.Principal));
    expect(services).toHaveLength(2);
    expect(services.join()).toContain('logs.${AWS::Region}.amazonaws.com');
    expect(services.join()).toContain('cloudwatch.amazonaws.com');
    const logs = statements.find((s) => s.Sid === 'CloudWatchLogsEncryptsStackLogGroups');
    expect(json(logs?.Condition?.ArnLike?.['kms:EncryptionContext:aws:logs:arn'])).toContain(
      'log-group:/aws/lambda/tapline-ci-*',
    );
  });

  it('denies grants except for AWS resources (CT.KMS.PR.3)', () => {
    const deny = (props('EvidenceKey').KeyPolicy.Statement as Statement[]).find(
      (s) => s.Effect === 'Deny' && s.Action === 'kms:CreateGrant',
    );
    expect(deny?.Condition?.BoolIfExists).toEqual({
      'kms:GrantIsForAWSResource': 'false',
      'aws:PrincipalIsAWSService': 'false',
    });
  });
});

describe('evidence bucket', () => {
  it('is versioned with Object Lock and the default retention from the stage params', () => {
    const p = props('EvidenceBucket');
    expect(p.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(p.ObjectLockEnabled).toBe(true);
    expect(p.ObjectLockConfiguration).toEqual({
      ObjectLockEnabled: 'Enabled',
      Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 365 } },
    });
    expect(res('EvidenceBucket').DeletionPolicy).toBe('Retain');
  });

  it('takes Object Lock mode and days from --param', async () => {
    const custom = await tunedTemplate();
    expect(
      custom.template.Resources.EvidenceBucket.Properties?.ObjectLockConfiguration.Rule
        .DefaultRetention,
    ).toMatchObject({ Mode: 'COMPLIANCE' });
    expect(
      Number(
        custom.template.Resources.EvidenceBucket.Properties?.ObjectLockConfiguration.Rule
          .DefaultRetention.Days,
      ),
    ).toBe(30);
  });

  it('encrypts with the evidence key (SSE-KMS) and a bucket key', () => {
    expect(props('EvidenceBucket').BucketEncryption.ServerSideEncryptionConfiguration).toEqual([
      {
        ServerSideEncryptionByDefault: {
          SSEAlgorithm: 'aws:kms',
          KMSMasterKeyID: getAtt('EvidenceKey'),
        },
        BucketKeyEnabled: true,
      },
    ]);
  });

  it('blocks all public access and disables ACLs', () => {
    const p = props('EvidenceBucket');
    expect(p.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    expect(p.OwnershipControls.Rules).toEqual([{ ObjectOwnership: 'BucketOwnerEnforced' }]);
  });

  it('logs access to the SSE-S3 access-log bucket, which admits only the S3 logging service from our buckets', () => {
    expect(props('EvidenceBucket').LoggingConfiguration).toEqual({
      DestinationBucketName: { Ref: 'AccessLogBucket' },
      LogFilePrefix: 'evidence/',
    });
    const log = props('AccessLogBucket');
    expect(
      log.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault,
    ).toEqual({ SSEAlgorithm: 'AES256' });
    expect(log.PublicAccessBlockConfiguration.RestrictPublicBuckets).toBe(true);
    const delivery = (props('AccessLogBucketPolicy').PolicyDocument.Statement as Statement[]).find(
      (s) => s.Effect === 'Allow',
    );
    expect(delivery?.Principal).toEqual({ Service: 'logging.s3.amazonaws.com' });
    expect(delivery?.Action).toBe('s3:PutObject');
    expect(json(delivery?.Condition?.ArnLike?.['aws:SourceArn'])).toContain(
      'tapline-ci-us-east-1-evidence',
    );
    expect(delivery?.Condition?.StringEquals?.['aws:SourceAccount']).toEqual({
      Ref: 'AWS::AccountId',
    });
  });

  it('moves pcaps/ and results/ to colder storage after the param days and expires guard objects', () => {
    const rules: any[] = props('EvidenceBucket').LifecycleConfiguration.Rules;
    const byPrefix = (prefix: string) => rules.find((r) => r.Prefix === prefix);
    for (const prefix of ['pcaps/', 'results/']) {
      expect(byPrefix(prefix).Status).toBe('Enabled');
      expect(byPrefix(prefix).Transitions).toEqual([
        { StorageClass: 'STANDARD_IA', TransitionInDays: 30 },
      ]);
      expect(byPrefix(prefix).ExpirationInDays).toBeUndefined();
    }
    for (const prefix of ['locks/', 'cooldowns/', 'budget/']) {
      expect(byPrefix(prefix).ExpirationInDays).toBe(1);
      expect(byPrefix(prefix).NoncurrentVersionExpiration).toEqual({ NoncurrentDays: 1 });
    }
    expect(rules.some((r) => r.AbortIncompleteMultipartUpload?.DaysAfterInitiation === 7)).toBe(
      true,
    );
    // Nothing ever expires evidence or custody records.
    expect(byPrefix('captures/')).toBeUndefined();
  });

  it('notifies the processing queue of new objects under pcaps/ only', () => {
    expect(props('EvidenceBucket').NotificationConfiguration).toEqual({
      QueueConfigurations: [
        {
          Event: 's3:ObjectCreated:*',
          Queue: getAtt('ProcessingQueue'),
          Filter: { S3Key: { Rules: [{ Name: 'prefix', Value: 'pcaps/' }] } },
        },
      ],
    });
    expect(res('EvidenceBucket').DependsOn).toContain('ProcessingQueuePolicy');
    const send = (props('ProcessingQueuePolicy').PolicyDocument.Statement as Statement[])[0];
    expect(send.Principal).toEqual({ Service: 's3.amazonaws.com' });
    expect(json(send.Condition?.ArnLike?.['aws:SourceArn'])).toContain(
      'tapline-ci-us-east-1-evidence',
    );
  });
});

describe('evidence bucket policy', () => {
  const statement = (sid: string) =>
    (props('EvidenceBucketPolicy').PolicyDocument.Statement as Statement[]).find(
      (s) => s.Sid === sid,
    );

  it('denies every request without TLS, on the bucket and its objects', () => {
    const s = statement('DenyInsecureTransport');
    expect(s).toMatchObject({ Effect: 'Deny', Principal: '*', Action: 's3:*' });
    expect(s?.Condition).toEqual({ Bool: { 'aws:SecureTransport': 'false' } });
    expect(json(s?.Resource)).toContain('EvidenceBucket');
    expect(list(s?.Resource)).toHaveLength(2);
  });

  it('denies TLS older than 1.2', () => {
    const s = statement('DenyTlsBelow12');
    expect(s).toMatchObject({ Effect: 'Deny', Principal: '*', Action: 's3:*' });
    expect(s?.Condition).toEqual({ NumericLessThan: { 's3:TlsVersion': '1.2' } });
  });

  it('denies uploads that are not SSE-KMS, and uploads with any key but the evidence key', () => {
    // Only when an encryption header is sent (Null: false): UploadPart, UploadPartCopy and
    // CompleteMultipartUpload carry none and must pass (test/infra/evidence-upload-policy.test.ts
    // simulates each request); header-less requests get the bucket default, the evidence key.
    expect(statement('DenyUploadsNotSseKms')).toMatchObject({
      Effect: 'Deny',
      Action: 's3:PutObject',
    });
    expect(statement('DenyUploadsNotSseKms')?.Condition).toEqual({
      Null: { 's3:x-amz-server-side-encryption': 'false' },
      StringNotEquals: { 's3:x-amz-server-side-encryption': 'aws:kms' },
    });
    expect(statement('DenyUploadsWithAnotherKey')).toMatchObject({
      Effect: 'Deny',
      Action: 's3:PutObject',
    });
    expect(statement('DenyUploadsWithAnotherKey')?.Condition).toEqual({
      Null: { 's3:x-amz-server-side-encryption': 'false' },
      StringNotEquals: {
        's3:x-amz-server-side-encryption-aws-kms-key-id': getAtt('EvidenceKey'),
      },
    });
    // ... which is safe because the bucket default is SSE-KMS with the evidence key.
    expect(
      props('EvidenceBucket').BucketEncryption.ServerSideEncryptionConfiguration[0]
        .ServerSideEncryptionByDefault,
    ).toEqual({ SSEAlgorithm: 'aws:kms', KMSMasterKeyID: getAtt('EvidenceKey') });
  });

  it('does not deny what logging, replication and notifications need', () => {
    const denies = (props('EvidenceBucketPolicy').PolicyDocument.Statement as Statement[]).filter(
      (s) => s.Effect === 'Deny',
    );
    // Only transport denies cover more than PutObject; replication reads use
    // GetObjectVersionForReplication, access logs are written to the access-log bucket.
    for (const s of denies) {
      if (s.Action === 's3:*') expect(Object.keys(s.Condition ?? {})).toEqual(expect.any(Array));
      else expect(s.Action).toBe('s3:PutObject');
    }
    expect(props('EvidenceBucket').LoggingConfiguration.DestinationBucketName).not.toEqual({
      Ref: 'EvidenceBucket',
    });
  });

  it('every bucket policy in the stack is TLS 1.2+ only', () => {
    const policies = Object.values(resources).filter((r) => r.Type === 'AWS::S3::BucketPolicy');
    expect(policies.length).toBe(3);
    for (const p of policies) {
      const text = json(p.Properties?.PolicyDocument);
      expect(text).toContain('"aws:SecureTransport":"false"');
      expect(text).toContain('"s3:TlsVersion":"1.2"');
    }
  });
});

describe('cross-region replication', () => {
  it('is a deploy-time condition on both replica parameters, validated by pattern', () => {
    expect(json(pkg.template.Conditions?.ReplicationEnabled)).toContain('ReplicaBucketArn');
    expect(json(pkg.template.Conditions?.ReplicationEnabled)).toContain('ReplicaKeyArn');
    expect(pkg.template.Parameters.ReplicaBucketArn.Default).toBe('');
    expect(pkg.template.Parameters.ReplicaBucketArn.AllowedPattern).toMatch(/^\^\$\|/);
    expect(pkg.template.Parameters.ReplicaKeyArn.AllowedPattern).toContain(':key/');
    expect(res('ReplicationRole').Condition).toBe('ReplicationEnabled');
  });

  it('replicates KMS-encrypted pcaps, manifests and results with the replica key, RTC 15 min and metrics, never delete markers', () => {
    const [condition, config, otherwise] =
      props('EvidenceBucket').ReplicationConfiguration['Fn::If'];
    expect(condition).toBe('ReplicationEnabled');
    expect(otherwise).toEqual({ Ref: 'AWS::NoValue' });
    expect(config.Role).toEqual(getAtt('ReplicationRole'));
    expect(config.Rules.map((r: any) => r.Filter.Prefix)).toEqual([
      'pcaps/',
      'captures/',
      'results/',
    ]);
    for (const rule of config.Rules) {
      expect(rule.Status).toBe('Enabled');
      expect(rule.SourceSelectionCriteria).toEqual({
        SseKmsEncryptedObjects: { Status: 'Enabled' },
      });
      expect(rule.DeleteMarkerReplication).toEqual({ Status: 'Disabled' });
      expect(rule.Destination).toEqual({
        Bucket: { Ref: 'ReplicaBucketArn' },
        EncryptionConfiguration: { ReplicaKmsKeyID: { Ref: 'ReplicaKeyArn' } },
        ReplicationTime: { Status: 'Enabled', Time: { Minutes: 15 } },
        Metrics: { Status: 'Enabled', EventThreshold: { Minutes: 15 } },
      });
    }
  });

  it('gives the replication role exactly what S3 replication needs', () => {
    const trust = props('ReplicationRole').AssumeRolePolicyDocument.Statement[0];
    expect(trust.Principal).toEqual({ Service: 's3.amazonaws.com' });
    const statements = roleStatements('ReplicationRole');
    expect(allActions(statements).sort()).toEqual(
      [
        's3:GetReplicationConfiguration',
        's3:ListBucket',
        's3:GetObjectVersionForReplication',
        's3:GetObjectVersionAcl',
        's3:GetObjectVersionTagging',
        's3:GetObjectRetention',
        's3:GetObjectLegalHold',
        's3:ReplicateObject',
        's3:ReplicateDelete',
        's3:ReplicateTags',
        'kms:Decrypt',
        'kms:Encrypt',
        'kms:GenerateDataKey',
      ].sort(),
    );
    const decrypt = statements.find((s) => s.Action === 'kms:Decrypt');
    expect(decrypt?.Resource).toEqual(getAtt('EvidenceKey'));
    expect(json(decrypt?.Condition?.StringEquals?.['kms:ViaService'])).toContain(
      's3.${AWS::Region}',
    );
    const encrypt = statements.find((s) => list(s.Action).includes('kms:Encrypt'));
    expect(encrypt?.Resource).toEqual({ Ref: 'ReplicaKeyArn' });
    expect(json(encrypt?.Condition)).toContain('kms:ViaService');
    const replicate = statements.find((s) => list(s.Action).includes('s3:ReplicateObject'));
    expect(json(replicate?.Resource)).toContain('${ReplicaBucketArn}/*');
  });
});

describe('processing queue', () => {
  it('is encrypted with a dead-letter queue and maxReceiveCount', () => {
    const q = props('ProcessingQueue');
    expect(q.SqsManagedSseEnabled).toBe(true);
    expect(q.RedrivePolicy).toEqual({
      deadLetterTargetArn: getAtt('ProcessingDeadLetterQueue'),
      maxReceiveCount: 5,
    });
    expect(props('ProcessingDeadLetterQueue').SqsManagedSseEnabled).toBe(true);
    expect(props('ProcessingDeadLetterQueue').MessageRetentionPeriod).toBe(1209600);
  });

  it("has a visibility timeout at least 6x process-pcap's timeout", async () => {
    const timeout = props('ProcessPcapLambdaFunction').Timeout;
    expect(timeout).toBe(300);
    expect(props('ProcessingQueue').VisibilityTimeout).toBeGreaterThanOrEqual(6 * timeout);
    // and keeps that relation when the processor timeout is raised with its partner param
    const tuned = await tunedTemplate();
    const r = tuned.template.Resources;
    expect(Number(r.ProcessingQueue.Properties?.VisibilityTimeout)).toBeGreaterThanOrEqual(
      6 * Number(r.ProcessPcapLambdaFunction.Properties?.Timeout),
    );
  });

  it('feeds process-pcap one pcap at a time, with partial batch failures', () => {
    const mapping = Object.values(resources).find(
      (r) => r.Type === 'AWS::Lambda::EventSourceMapping',
    );
    // one file per invocation: a record left without time by a slow neighbour would be failed
    // unread and use up one of its receives
    expect(mapping?.Properties).toMatchObject({
      EventSourceArn: getAtt('ProcessingQueue'),
      FunctionName: getAtt('ProcessPcapLambdaFunction'),
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BatchSize: 1,
    });
  });

  it('alarms on dead-letter depth to the encrypted notification topic', () => {
    const alarm = props('ProcessingDeadLetterAlarm');
    expect(alarm).toMatchObject({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      ActionsEnabled: true,
      AlarmActions: [{ Ref: 'NotificationTopic' }],
    });
    expect(alarm.Dimensions[0].Value).toEqual(getAtt('ProcessingDeadLetterQueue', 'QueueName'));
    expect(props('NotificationTopic').KmsMasterKeyId).toEqual(getAtt('EvidenceKey'));
  });
});

describe('functions', () => {
  it.each(Object.entries(FUNCTIONS))(
    '%s: own role, reserved concurrency, tracing, DLQ, arm64 nodejs24.x',
    (name, id) => {
      const fn = props(`${id}LambdaFunction`);
      expect(fn.FunctionName).toBe(`tapline-ci-${name}`);
      expect(fn.Role).toEqual(getAtt(`${id}Role`));
      expect(fn.ReservedConcurrentExecutions).toBeGreaterThanOrEqual(1);
      expect(fn.TracingConfig).toEqual({ Mode: 'Active' });
      expect(fn.DeadLetterConfig).toEqual({ TargetArn: getAtt('FailedInvocationsQueue') });
      expect(fn.Runtime).toBe('nodejs24.x');
      expect(fn.Architectures).toEqual(['arm64']);
    },
  );

  it.each(Object.entries(FUNCTIONS))(
    '%s: log group with retention, encrypted with the evidence key',
    (name, id) => {
      const group = props(`${id}LogGroup`);
      expect(group.LogGroupName).toBe(`/aws/lambda/tapline-ci-${name}`);
      expect(group.RetentionInDays).toBe(365);
      expect(group.KmsKeyId).toEqual(getAtt('EvidenceKey'));
    },
  );

  it('every role is used by exactly one function', () => {
    const roles = Object.values(FUNCTIONS).map((id) => json(props(`${id}LambdaFunction`).Role));
    expect(new Set(roles).size).toBe(5);
  });

  it('environment values are plain strings (invoke local needs no lookups)', () => {
    for (const id of Object.values(FUNCTIONS)) {
      const env = props(`${id}LambdaFunction`).Environment.Variables;
      for (const [k, v] of Object.entries(env)) expect(typeof v, `${id} ${k}`).toBe('string');
      expect(env.EVIDENCE_KEY_ID).toBe('alias/tapline-ci-evidence');
      expect(env.NOTIFICATION_TOPIC).toBe('tapline-ci-notifications');
      expect(env.EVIDENCE_BUCKET).toBe('tapline-ci-us-east-1-evidence');
      expect(env.CAPTURE_DOCUMENT_NAME).toBe(props('CaptureDocument').Name);
      // who may start a capture is IAM's (lambda:InvokeFunction), not an env allow-list
      expect(env.ALLOWED_REQUESTERS).toBeUndefined();
    }
    // The detector reads subscription records with the stage's flow-log format (AWS v2 default).
    expect(props('DetectFlowAnomaliesLambdaFunction').Environment.Variables.FLOW_LOG_FORMAT).toBe(
      'version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status',
    );
    // No stage rule override by default: the repository's rules.
    expect(props('DetectFlowAnomaliesLambdaFunction').Environment.Variables.RULES_OVERRIDE).toBe(
      '',
    );
  });

  it('the rulesOverride param reaches the detector as RULES_OVERRIDE, and the rules load from it', async () => {
    const tunedEnv = (await tunedTemplate()).template.Resources.DetectFlowAnomaliesLambdaFunction!
      .Properties!.Environment.Variables;
    expect(tunedEnv.RULES_OVERRIDE).toBe(RULES_OVERRIDE);
    const config = parseConfig({ ...tunedEnv, AWS_REGION: 'us-east-1' });
    expect(loadRules(config.RULES_OVERRIDE).rules['port-scan'].distinctPorts).toBe(50);
    const defaults = parseConfig({
      ...props('DetectFlowAnomaliesLambdaFunction').Environment.Variables,
      AWS_REGION: 'us-east-1',
    });
    expect(defaults.RULES_OVERRIDE).toBeUndefined();
    expect(loadRules(defaults.RULES_OVERRIDE).rules['port-scan'].distinctPorts).toBe(20);
  });

  it('asynchronous invocations retry a bounded number of times before the DLQ', () => {
    for (const id of ['DetectFlowAnomalies', 'StartCapture', 'RollingCapture', 'TrackCapture']) {
      const config = props(`${id}LambdaEvConf`);
      expect(config.MaximumRetryAttempts).toBe(2);
      expect(config.MaximumEventAgeInSeconds).toBeGreaterThanOrEqual(3600);
    }
  });

  it('the failed-invocations queue is encrypted, alarmed, and only our EventBridge rules may send to it', () => {
    expect(props('FailedInvocationsQueue').SqsManagedSseEnabled).toBe(true);
    expect(props('FailedInvocationsQueue').RedriveAllowPolicy).toEqual({
      redrivePermission: 'denyAll',
    });
    expect(props('FailedInvocationsAlarm').AlarmActions).toEqual([{ Ref: 'NotificationTopic' }]);
    const allow = (
      props('FailedInvocationsQueuePolicy').PolicyDocument.Statement as Statement[]
    ).find((s) => s.Effect === 'Allow');
    expect(allow?.Principal).toEqual({ Service: 'events.amazonaws.com' });
    expect(json(allow?.Condition?.ArnLike?.['aws:SourceArn'])).toContain(':rule/tapline-ci-*');
  });
});

describe('function roles (least privilege)', () => {
  const RESOURCE_STAR_ALLOWED = new Set([
    'ec2:DescribeInstances',
    'ec2:DescribeNetworkInterfaces',
    'ec2:DescribeRouteTables',
    'ec2:DescribeSubnets',
    'ssm:DescribeInstanceInformation',
    'ssm:ListCommands',
    'ssm:GetCommandInvocation',
    'xray:PutTraceSegments',
    'xray:PutTelemetryRecords',
  ]);
  const bucketObjects = (prefix: string) => (r: string) =>
    r.includes(`tapline-ci-us-east-1-evidence/${prefix}`);

  it('no function may delete anything in the evidence bucket', () => {
    for (const id of Object.values(FUNCTIONS)) {
      const statements = roleStatements(`${id}Role`);
      const actions = allActions(statements);
      expect(
        actions.filter((a) => /^s3:Delete|^s3:PutBucket|^s3:BypassGovernance/.test(a)),
        id,
      ).toEqual([]);
      // Object retention may be set only on guard objects (short GOVERNANCE retention for
      // locks, cooldowns, budget slots): never on pcaps, manifests or results. Without
      // s3:BypassGovernanceRetention it can only lengthen a retention anyway.
      for (const st of statements.filter((x) => list(x.Action).includes('s3:PutObjectRetention'))) {
        for (const r of list(st.Resource)) {
          expect(json(r), id).toMatch(/\/(locks|cooldowns|budget)\/\*"/);
        }
      }
    }
  });

  it.each(Object.values(FUNCTIONS))(
    '%sRole: no wildcard action, Resource * only where AWS requires it',
    (id) => {
      const statements = roleStatements(`${id}Role`);
      for (const s of statements) {
        for (const a of list(s.Action)) expect(a, `${id} ${a}`).not.toContain('*');
        if (list(s.Resource).includes('*'))
          for (const a of list(s.Action))
            expect(RESOURCE_STAR_ALLOWED.has(a), `${id} ${a} on *`).toBe(true);
      }
      // Each role writes only its own log group, traces, and may dead-letter.
      const logs = statements.find((s) => list(s.Action).includes('logs:PutLogEvents'));
      expect(json(logs?.Resource)).toMatch(
        new RegExp(`/aws/lambda/tapline-ci-${id[0].toLowerCase()}${id.slice(1)}:\\*`),
      );
      expect(allActions(statements)).toEqual(
        expect.arrayContaining(['xray:PutTraceSegments', 'sqs:SendMessage']),
      );
    },
  );

  it.each(['DetectFlowAnomalies', 'StartCapture', 'RollingCapture'])(
    '%sRole: the capture core (discovery, the capture document only, guard objects, key, topic, events)',
    (id) => {
      const statements = roleStatements(`${id}Role`);
      expect(allActions(statements)).toEqual(
        expect.arrayContaining([
          'ec2:DescribeInstances',
          'ec2:DescribeNetworkInterfaces',
          'ec2:DescribeRouteTables',
          'ec2:DescribeSubnets',
          'ssm:DescribeInstanceInformation',
          'ssm:ListCommands',
          'ssm:SendCommand',
          'sns:Publish',
          'events:PutEvents',
        ]),
      );
      const sendCommand = statements.filter((s) => list(s.Action).includes('ssm:SendCommand'));
      expect(sendCommand.map((s) => json(s.Resource)).join()).toContain(
        ':document/tapline-ci-capture',
      );
      expect(sendCommand.map((s) => json(s.Resource)).join()).toContain(':instance/*');
      expect(sendCommand.map((s) => json(s.Resource)).join()).not.toContain('"*"');
      expect(actionsOn(statements, bucketObjects('captures/')).sort()).toEqual([
        's3:GetObject',
        's3:PutObject',
      ]);
      for (const prefix of ['locks/', 'cooldowns/', 'budget/'])
        expect(actionsOn(statements, bucketObjects(prefix)).sort()).toEqual([
          's3:GetObject',
          // the rolling function also runs the timed-out sweep, which reads a corrupt lock's
          // earlier versions
          ...(id === 'RollingCapture' && prefix === 'locks/' ? ['s3:GetObjectVersion'] : []),
          's3:PutObject',
          's3:PutObjectRetention',
        ]);
      expect(actionsOn(statements, bucketObjects('pcaps/'))).toEqual([]);
      expect(actionsOn(statements, bucketObjects('results/'))).toEqual([]);
      const list_ = statements.find((s) => s.Action === 's3:ListBucket');
      expect(list_?.Condition?.StringLike?.['s3:prefix']).toEqual([
        'captures/*',
        'locks/*',
        'cooldowns/*',
        'budget/*',
      ]);
      expect(actionsOn(statements, (r) => r === json(getAtt('EvidenceKey'))).sort()).toEqual([
        'kms:Decrypt',
        'kms:DescribeKey',
        'kms:GenerateDataKey',
      ]);
      expect(json(statements.find((s) => s.Action === 'events:PutEvents')?.Resource)).toContain(
        ':event-bus/default',
      );
    },
  );

  it('SendCommand can be limited to instances tagged tapline:capture-host=true', async () => {
    const role = props('StartCaptureRole').Policies[0].PolicyDocument;
    const branch = role.Statement.find((s: any) => s['Fn::If']?.[0] === 'SendCommandTagRestricted');
    expect(branch['Fn::If'][1].Condition).toEqual({
      StringEquals: { 'ssm:resourceTag/tapline:capture-host': 'true' },
    });
    expect(branch['Fn::If'][2].Condition).toBeUndefined();
    expect(pkg.template.Parameters.RequireCaptureHostTag.Default).toBe('false');
    const tagged = await tunedTemplate();
    expect(tagged.template.Parameters.RequireCaptureHostTag.Default).toBe('true');
    expect(tagged.template.Conditions?.SendCommandTagRestricted).toEqual({
      'Fn::Equals': [{ Ref: 'RequireCaptureHostTag' }, 'true'],
    });
  });

  it('detectFlowAnomalies reads flow-log objects only from the configured bucket, only when configured', () => {
    const statement = props('DetectFlowAnomaliesRole').Policies[0].PolicyDocument.Statement.find(
      (s: any) => s['Fn::If']?.[0] === 'FlowLogBucketConfigured',
    );
    expect(statement['Fn::If'][1]).toMatchObject({ Action: 's3:GetObject' });
    expect(json(statement['Fn::If'][1].Resource)).toContain('${FlowLogBucketName}/*');
    expect(statement['Fn::If'][2]).toEqual({ Ref: 'AWS::NoValue' });
  });

  it('rollingCapture runs the timed-out sweep: it may read lock versions, under locks/ only', () => {
    const statements = roleStatements('RollingCaptureRole');
    const versions = statements.filter((s) => s.Action === 's3:ListBucketVersions');
    expect(versions.map((s) => s.Condition?.StringLike?.['s3:prefix'])).toEqual([['locks/*']]);
    expect(actionsOn(statements, bucketObjects('locks/'))).toContain('s3:GetObjectVersion');
    expect(
      statements
        .filter((s) => list(s.Action).includes('s3:GetObjectVersion'))
        .flatMap((s) => list(s.Resource).map(json)),
    ).toEqual([expect.stringContaining('evidence/locks/*')]);
  });

  it('trackCapture: command results, manifests, host locks, reading pcaps; no SendCommand', () => {
    const statements = roleStatements('TrackCaptureRole');
    expect(allActions(statements)).toContain('ssm:GetCommandInvocation');
    expect(allActions(statements)).not.toContain('ssm:SendCommand');
    expect(actionsOn(statements, bucketObjects('captures/')).sort()).toEqual([
      's3:GetObject',
      's3:PutObject',
    ]);
    expect(actionsOn(statements, bucketObjects('locks/')).sort()).toEqual([
      's3:GetObject',
      's3:GetObjectVersion',
      's3:PutObject',
      's3:PutObjectRetention',
    ]);
    // the tracker lists the versions the host uploaded for a capture (pcaps/), and the sweep a
    // corrupt lock's earlier versions (locks/): nothing else
    const versions = statements.filter((s) => s.Action === 's3:ListBucketVersions');
    expect(versions.map((s) => s.Condition?.StringLike?.['s3:prefix']).sort()).toEqual([
      ['locks/*'],
      ['pcaps/*'],
    ]);
    const pcaps = actionsOn(statements, bucketObjects('pcaps/'));
    expect(pcaps).toEqual(expect.arrayContaining(['s3:GetObject', 's3:GetObjectVersion']));
    expect(pcaps).not.toContain('s3:PutObject');
    expect(pcaps).not.toContain('s3:DeleteObject');
    expect(allActions(statements)).toEqual(
      expect.arrayContaining(['sns:Publish', 'events:PutEvents', 's3:ListBucket']),
    );
  });

  it('processPcap: reads pcaps and manifests, writes results, consumes its queue, nothing else', () => {
    const statements = roleStatements('ProcessPcapRole');
    expect(actionsOn(statements, bucketObjects('pcaps/')).sort()).toEqual([
      's3:GetObject',
      's3:GetObjectAttributes',
      's3:GetObjectVersion',
      's3:GetObjectVersionAttributes',
    ]);
    expect(actionsOn(statements, bucketObjects('captures/'))).toEqual(['s3:GetObject']);
    expect(actionsOn(statements, bucketObjects('results/')).sort()).toEqual([
      's3:AbortMultipartUpload',
      's3:GetObject',
      's3:PutObject',
    ]);
    expect(actionsOn(statements, (r) => r === json(getAtt('ProcessingQueue'))).sort()).toEqual([
      'sqs:ChangeMessageVisibility',
      'sqs:DeleteMessage',
      'sqs:GetQueueAttributes',
      'sqs:ReceiveMessage',
    ]);
    // the replaced-evidence check lists the versions of the pcap key, under pcaps/ only
    const versions = statements.filter((s) => list(s.Action).includes('s3:ListBucketVersions'));
    expect(versions).toHaveLength(1);
    expect(versions[0]!.Condition).toEqual({ StringLike: { 's3:prefix': ['pcaps/*'] } });
    expect(allActions(statements)).not.toContain('ssm:SendCommand');
    expect(allActions(statements).some((a) => a.startsWith('ec2:'))).toBe(false);
    // serverless adds no second policy or role for the SQS event source
    expect(props('ProcessPcapRole').Policies).toHaveLength(1);
    expect(resources.IamRoleLambdaExecution).toBeUndefined();
  });
});

describe('capture host policy', () => {
  it('allows only PutObject under pcaps/ with SSE-KMS and the evidence key', () => {
    const p = props('CaptureHostPolicy');
    expect(res('CaptureHostPolicy').Type).toBe('AWS::IAM::ManagedPolicy');
    const statements: Statement[] = p.PolicyDocument.Statement;
    const s3 = statements.filter((s) => list(s.Action).some((a) => a.startsWith('s3:')));
    expect(s3).toHaveLength(2);
    for (const s of s3) {
      expect(s.Action).toBe('s3:PutObject');
      expect(json(s.Resource)).toContain('tapline-ci-us-east-1-evidence/pcaps/*');
    }
    expect(s3[0]!.Condition).toEqual({
      StringEquals: {
        's3:x-amz-server-side-encryption': 'aws:kms',
        's3:x-amz-server-side-encryption-aws-kms-key-id': getAtt('EvidenceKey'),
      },
    });
    // Multipart parts and completions carry no encryption headers (their upload's
    // CreateMultipartUpload did): allowed only when none is sent.
    expect(s3[1]!.Condition).toEqual({
      Null: {
        's3:x-amz-server-side-encryption': 'true',
        's3:x-amz-server-side-encryption-aws-kms-key-id': 'true',
      },
    });
  });

  it('uses the key only through S3 for this bucket, and nothing else', () => {
    const statements: Statement[] = props('CaptureHostPolicy').PolicyDocument.Statement;
    const kms = statements.filter((s) => list(s.Action).some((a) => a.startsWith('kms:')));
    expect(kms).toHaveLength(1);
    expect(kms[0].Resource).toEqual(getAtt('EvidenceKey'));
    expect(json(kms[0].Condition?.StringEquals?.['kms:ViaService'])).toContain('s3.${AWS::Region}');
    expect(json(kms[0].Condition?.StringLike)).toContain('tapline-ci-us-east-1-evidence');
    expect(statements).toHaveLength(3);
    expect(pkg.template.Outputs?.CaptureHostPolicyArn.Value).toEqual({ Ref: 'CaptureHostPolicy' });
  });
});

describe('VPC Flow Logs input', () => {
  it('the stack flow-log group is encrypted, retained, and subscribed after it exists', () => {
    expect(props('VpcFlowLogGroup')).toMatchObject({
      LogGroupName: '/tapline/ci/vpc-flow-logs',
      RetentionInDays: 365,
      KmsKeyId: getAtt('EvidenceKey'),
    });
    const filter = Object.entries(resources).find(
      ([, r]) => r.Type === 'AWS::Logs::SubscriptionFilter',
    );
    expect(filter?.[1].Properties?.LogGroupName).toBe('/tapline/ci/vpc-flow-logs');
    expect(filter?.[1].Properties?.DestinationArn).toEqual(
      getAtt('DetectFlowAnomaliesLambdaFunction'),
    );
    expect(filter?.[1].DependsOn).toContain('VpcFlowLogGroup');
  });

  it('has a delivery role only VPC Flow Logs of this account can assume, writing only that group', () => {
    const role = props('FlowLogsDeliveryRole');
    const trust = role.AssumeRolePolicyDocument.Statement[0];
    expect(trust.Principal).toEqual({ Service: 'vpc-flow-logs.amazonaws.com' });
    expect(trust.Condition.StringEquals['aws:SourceAccount']).toEqual({ Ref: 'AWS::AccountId' });
    const statements = roleStatements('FlowLogsDeliveryRole');
    const write = statements.find((s) => list(s.Action).includes('logs:PutLogEvents'));
    expect(json(write?.Resource)).toContain('VpcFlowLogGroup');
    expect(pkg.template.Outputs?.FlowLogsDeliveryRoleArn.Value).toEqual(
      getAtt('FlowLogsDeliveryRole'),
    );
    expect(pkg.template.Outputs?.FlowLogGroupName.Value).toEqual({ Ref: 'VpcFlowLogGroup' });
  });

  it('S3-delivered flow logs reach the detector through an EventBridge rule, only when the bucket is configured', () => {
    const rule = res('FlowLogObjectCreatedRule');
    expect(rule.Condition).toBe('FlowLogBucketConfigured');
    expect(rule.Properties?.EventPattern).toEqual({
      source: ['aws.s3'],
      'detail-type': ['Object Created'],
      detail: {
        bucket: { name: [{ Ref: 'FlowLogBucketName' }] },
        // Text delivery (.log.gz) and Parquet delivery (.log.parquet).
        object: { key: [{ suffix: '.log.gz' }, { suffix: '.log.parquet' }] },
      },
    });
    const target = rule.Properties?.Targets[0];
    expect(target.Arn).toEqual(getAtt('DetectFlowAnomaliesLambdaFunction'));
    expect(target.DeadLetterConfig).toEqual({ Arn: getAtt('FailedInvocationsQueue') });
    expect(res('FlowLogObjectCreatedPermission')).toMatchObject({
      Condition: 'FlowLogBucketConfigured',
      Properties: {
        Principal: 'events.amazonaws.com',
        SourceArn: getAtt('FlowLogObjectCreatedRule'),
        FunctionName: getAtt('DetectFlowAnomaliesLambdaFunction'),
      },
    });
    expect(json(pkg.template.Conditions?.FlowLogBucketConfigured)).toContain('FlowLogBucketName');
  });
});

describe('event sources of the other functions', () => {
  it('track-capture gets only status changes of the Tapline capture document, with a DLQ', () => {
    const rule = props('TrackCaptureCommandStatusRule');
    expect(rule.EventPattern).toEqual({
      source: ['aws.ssm'],
      'detail-type': ['EC2 Command Invocation Status-change Notification'],
      detail: { 'document-name': ['tapline-ci-capture'] },
    });
    expect(rule.Targets[0]).toMatchObject({
      Arn: getAtt('TrackCaptureLambdaFunction'),
      DeadLetterConfig: { Arn: getAtt('FailedInvocationsQueue') },
    });
    expect(props('TrackCaptureCommandStatusPermission').SourceArn).toEqual(
      getAtt('TrackCaptureCommandStatusRule'),
    );
  });

  const scheduleOf = (functionId: string) => {
    const rules = Object.values(resources).filter(
      (r) =>
        r.Type === 'AWS::Events::Rule' &&
        r.Properties?.ScheduleExpression &&
        r.Properties?.Targets.some((t: any) => json(t.Arn) === json(getAtt(functionId))),
    );
    expect(rules, functionId).toHaveLength(1);
    return rules[0]!.Properties!;
  };

  it('rolling-capture runs on a schedule that is disabled by default', () => {
    const schedule = scheduleOf('RollingCaptureLambdaFunction');
    expect(schedule.State).toBe('DISABLED');
    expect(schedule.ScheduleExpression).toBe('rate(1 hour)');
  });

  it('track-capture also runs every 15 minutes for the time-out sweep, enabled', () => {
    const schedule = scheduleOf('TrackCaptureLambdaFunction');
    expect(schedule.ScheduleExpression).toBe('rate(15 minutes)');
    expect(schedule.State).toBe('ENABLED');
    // Exactly two schedules in the stack: rolling-capture's and this one.
    const all = Object.values(resources).filter(
      (r) => r.Type === 'AWS::Events::Rule' && r.Properties?.ScheduleExpression,
    );
    expect(all).toHaveLength(2);
    const permission = Object.values(resources).find(
      (r) =>
        r.Type === 'AWS::Lambda::Permission' &&
        json(r.Properties?.FunctionName).includes('TrackCaptureLambdaFunction') &&
        json(r.Properties?.SourceArn).includes('Schedule'),
    );
    expect(permission?.Properties?.Principal).toBe('events.amazonaws.com');
  });

  it('no Lambda permission is open to a principal without a source restriction', () => {
    for (const [id, r] of Object.entries(resources)) {
      if (r.Type !== 'AWS::Lambda::Permission') continue;
      expect(r.Properties?.SourceArn, id).toBeDefined();
    }
  });
});

describe('Athena and outputs', () => {
  it('the workgroup enforces SSE-KMS query results with the evidence key', () => {
    const wg = props('ResultsWorkGroup').WorkGroupConfiguration;
    expect(wg.EnforceWorkGroupConfiguration).toBe(true);
    expect(wg.ResultConfiguration.EncryptionConfiguration).toEqual({
      EncryptionOption: 'SSE_KMS',
      KmsKey: getAtt('EvidenceKey'),
    });
    expect(wg.ResultConfiguration.OutputLocation).toBe(
      's3://tapline-ci-us-east-1-evidence/athena-results/',
    );
    expect(res('ResultsDatabase').Type).toBe('AWS::Glue::Database');
  });

  it('outputs everything a user wires up', () => {
    const outputs = pkg.template.Outputs ?? {};
    expect(outputs.EvidenceBucketName.Value).toEqual({ Ref: 'EvidenceBucket' });
    expect(outputs.EvidenceKeyArn.Value).toEqual(getAtt('EvidenceKey'));
    expect(outputs.ProcessingQueueUrl.Value).toEqual({ Ref: 'ProcessingQueue' });
    expect(outputs.CaptureDocumentName.Value).toEqual({ Ref: 'CaptureDocument' });
    expect(outputs.CaptureHostPolicyArn.Value).toEqual({ Ref: 'CaptureHostPolicy' });
    expect(outputs.NotificationTopicArn.Value).toEqual({ Ref: 'NotificationTopic' });
    expect(outputs.FlowLogGroupName).toBeDefined();
    expect(outputs.FlowLogsDeliveryRoleArn).toBeDefined();
    expect(outputs.ReplicationRoleArn.Condition).toBe('ReplicationEnabled');
  });
});

describe('serverless deployment bucket', () => {
  it('is hardened: public access blocked, versioned, SSE-KMS, logged, TLS 1.2+ only, old artifacts expire', () => {
    const p = props('ServerlessDeploymentBucket');
    expect(p.PublicAccessBlockConfiguration.BlockPublicPolicy).toBe(true);
    expect(p.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(
      p.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault
        .SSEAlgorithm,
    ).toBe('aws:kms');
    expect(p.LoggingConfiguration.DestinationBucketName).toEqual({ Ref: 'AccessLogBucket' });
    expect(p.LifecycleConfiguration.Rules[0].NoncurrentVersionExpiration.NoncurrentDays).toBe(30);
  });
});
