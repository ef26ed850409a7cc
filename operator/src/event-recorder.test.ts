import type { CoreV1Event } from '@kubernetes/client-node';
import { KubeApiError, KubeUnavailableError } from '../../common/src/errors';
import { FakeKubeClient } from '../../common/src/kube/fake-client';
import { EVENTS } from '../../common/src/kube/resources';
import { silentLogger } from '../../common/src/logger';
import { waitFor } from '../../common/src/testing/wait-for';
import { EventRecorder } from './event-recorder';

const event = (name: string): CoreV1Event => ({
  apiVersion: 'v1',
  kind: 'Event',
  metadata: { name, namespace: 'ns' },
  involvedObject: { kind: 'SessionLivedBackend', name: 'b', namespace: 'ns' },
  reason: 'Ready',
  message: 'Backend is Ready',
});

const creates = (kube: FakeKubeClient): number => kube.writes('events').filter((w) => w.verb === 'create').length;

describe('EventRecorder', () => {
  it('returns at once and writes the event in the background', async () => {
    const kube = new FakeKubeClient();
    const recorder = new EventRecorder(kube, silentLogger);
    recorder.record(event('b.ready.1234abcd'));
    expect(recorder.known('b.ready.1234abcd')).toBe(true);
    await recorder.whenIdle();
    expect(kube.all<CoreV1Event>(EVENTS).map((e) => e.metadata?.name)).toEqual(['b.ready.1234abcd']);
    await recorder.stop();
  });

  it('writes an event handed over twice once', async () => {
    const kube = new FakeKubeClient();
    const recorder = new EventRecorder(kube, silentLogger);
    recorder.record(event('b.ready.1'));
    recorder.record(event('b.ready.1'));
    await recorder.whenIdle();
    recorder.record(event('b.ready.1'));
    await recorder.whenIdle();
    expect(creates(kube)).toBe(1);
    await recorder.stop();
  });

  it('retries after the API server is away, and the event stays known meanwhile', async () => {
    const kube = new FakeKubeClient();
    kube.failNext('create', new KubeUnavailableError('connection refused'), { plural: 'events' });
    const recorder = new EventRecorder(kube, silentLogger);
    recorder.record(event('b.running.1'));
    await waitFor(() => kube.all<CoreV1Event>(EVENTS).length === 1, { description: 'the event after a retry' });
    expect(recorder.known('b.running.1')).toBe(true);
    await recorder.stop();
  });

  it('treats AlreadyExists as written (another operator recorded it)', async () => {
    const kube = new FakeKubeClient();
    await kube.create(EVENTS, 'ns', event('b.scheduled.1') as never);
    const recorder = new EventRecorder(kube, silentLogger);
    recorder.record(event('b.scheduled.1'));
    await recorder.whenIdle();
    expect(kube.all<CoreV1Event>(EVENTS)).toHaveLength(1);
    expect(recorder.known('b.scheduled.1')).toBe(true);
    await recorder.stop();
  });

  it('still writes the queued events of a backend deleted meanwhile (its Swept event above all)', async () => {
    const kube = new FakeKubeClient();
    kube.failNext('create', new KubeUnavailableError('connection refused'), { plural: 'events' });
    const recorder = new EventRecorder(kube, silentLogger);
    recorder.record(event('b.swept.1'));
    recorder.forget(['b.swept.1']);
    await waitFor(() => kube.all<CoreV1Event>(EVENTS).length === 1, { description: 'the Swept event after a retry' });
    await recorder.whenIdle();
    expect(recorder.known('b.swept.1')).toBe(false);
    await recorder.stop();
  });

  it('gives up on an event whose namespace is being terminated', async () => {
    const kube = new FakeKubeClient();
    kube.failNext(
      'create',
      new KubeApiError(
        403,
        'Forbidden',
        'events "b.ready.1" is forbidden: unable to create new content in namespace ns because it is being terminated',
      ),
      { plural: 'events' },
    );
    const recorder = new EventRecorder(kube, silentLogger);
    recorder.record(event('b.ready.1'));
    await recorder.whenIdle();
    expect(kube.all<CoreV1Event>(EVENTS)).toHaveLength(0);
    // Done with, not waiting for a retry: once its backend is forgotten, nothing of it remains.
    recorder.forget(['b.ready.1']);
    expect(recorder.known('b.ready.1')).toBe(false);
    await recorder.stop();
  });

  it('forgets the names of a deleted backend, so a new backend of that name gets its own events', async () => {
    const kube = new FakeKubeClient();
    const recorder = new EventRecorder(kube, silentLogger);
    recorder.markExisting('b.ready.1');
    expect(recorder.known('b.ready.1')).toBe(true);
    recorder.forget(['b.ready.1']);
    expect(recorder.known('b.ready.1')).toBe(false);
    await recorder.stop();
  });
});
