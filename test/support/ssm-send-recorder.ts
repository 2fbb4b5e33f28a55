import type { SSMClient } from '@aws-sdk/client-ssm';
import { motoClients } from './aws.ts';

/**
 * A moto SSM client that records the instance IDs of every SendCommand it sends, in order
 * (`sent[i]` is the i-th command's InstanceIds): how the capture tests count commands per host
 * and batch sizes while the command really goes to moto.
 */
export function ssmRecordingSendCommands(): { ssm: SSMClient; sent: string[][] } {
  const sent: string[][] = [];
  const ssm = motoClients().ssm;
  ssm.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'SendCommandCommand') {
        sent.push([...((args.input as { InstanceIds?: string[] }).InstanceIds ?? [])]);
      }
      return next(args);
    },
    { step: 'initialize', name: 'recordSendCommand' },
  );
  return { ssm, sent };
}
