// The demo page: get-or-create a backend by key through the REST API, follow its phases on the
// status stream (Server-Sent Events), and talk to it over a WebSocket through the entry point URL
// the API returned (that URL carries the backend's connection token).
'use strict';

(() => {
  const IMAGE = 'spawner-demo-backend';
  // Local mode's default configuration keeps this pool of demo backends started.
  const POOL = 'demo';
  const TOKEN_PARAM = 'spawner_token';
  const TERMINAL = ['Swept', 'Failed'];
  const $ = (id) => document.getElementById(id);

  /** The backend this page follows: { name, url, token, events, ws, userClosed, ended }. */
  let session = null;

  const params = new URLSearchParams(location.search);
  $('key').value = params.get('key') || `room-${Math.random().toString(36).slice(2, 8)}`;
  if (params.get('grace')) $('grace').value = params.get('grace');
  if (params.get('warm') === '0') $('warm').checked = false;

  function showError(text) {
    $('error').textContent = text;
    $('error').hidden = !text;
  }

  function setConnected(connected, text) {
    $('connection').textContent = text;
    $('increment').disabled = !connected;
    $('disconnect').disabled = !connected;
  }

  /**
   * How the backend started: the API's view of it says (launch Warm or Cold, with the reason of a
   * cold start); the time is its phase events', created → Ready.
   */
  async function showLaunch(s) {
    const at = (phase) => s.phases[phase];
    if (at('Ready') === undefined || at('Submitted') === undefined) return;
    const ms = Date.parse(at('Ready')) - Date.parse(at('Submitted'));
    const query = s.token ? `?${TOKEN_PARAM}=${encodeURIComponent(s.token)}` : '';
    const res = await fetch(`/v1/backends/${encodeURIComponent(s.name)}${query}`, { headers: s.apiHeaders }).catch(
      () => undefined,
    );
    const view = res && res.ok ? await res.json().catch(() => ({})) : {};
    const warm = view.launch === 'Warm';
    const why = warm
      ? ' (a pre-started process of the pool was claimed)'
      : ` (a process was started for it${view.launchReason ? `: ${view.launchReason}` : ''})`;
    $('launch').textContent = `${warm ? 'Warm' : 'Cold'}: created → Ready in ${ms} ms${why}`;
    $('launch').className = warm ? 'launch-warm' : 'launch-cold';
  }

  function setPhase(event) {
    const phase = $('phase');
    phase.textContent = event.phase;
    phase.className = `phase-${event.phase}`;
    $('phase-reason').textContent = event.reason ? `(${event.reason}${event.message ? `: ${event.message}` : ''})` : '';
    const item = document.createElement('li');
    item.textContent = `${event.phase} at ${new Date(event.time).toLocaleTimeString()}${event.reason ? ` — ${event.reason}` : ''}`;
    $('phase-history').append(item);
  }

  function endSession() {
    if (!session) return;
    session.ended = true;
    if (session.events) session.events.close();
    if (session.ws) session.ws.close();
    session = null;
  }

  function connect(s) {
    if (s.ws || s.userClosed || s.ended) return;
    const ws = new WebSocket(s.url.replace(/^http/, 'ws'));
    s.ws = ws;
    setConnected(false, 'connecting…');
    ws.onopen = () => setConnected(true, 'connected: WebSocket through the entry point to the backend process');
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type !== 'state') return;
      $('counter').textContent = String(msg.counter);
      $('clients').textContent = String(msg.clients);
      const others = msg.clients - 1;
      $('clients-hint').textContent =
        others > 0 ? `(this page and ${others} other${others > 1 ? 's' : ''}, all on the same process)` : '(only this page)';
    };
    ws.onclose = () => {
      s.ws = null;
      if (s.userClosed) {
        const grace = s.grace;
        setConnected(false, `disconnected: if nobody else is connected, the backend is swept after ${grace} s without use`);
      } else if (!s.ended) {
        setConnected(false, 'the connection closed');
      }
    };
  }

  function follow(s) {
    const query = s.token ? `?${TOKEN_PARAM}=${encodeURIComponent(s.token)}` : '';
    const events = new EventSource(`/v1/backends/${encodeURIComponent(s.name)}/events${query}`);
    s.events = events;
    events.onmessage = (m) => {
      const event = JSON.parse(m.data);
      setPhase(event);
      s.phases[event.phase] = event.time;
      if (event.phase === 'Ready') void showLaunch(s);
      if (event.phase === 'Ready') connect(s);
      if (TERMINAL.includes(event.phase)) {
        s.ended = true;
        events.close();
        if (s.ws) s.ws.close();
        setConnected(false, event.phase === 'Swept' ? 'the backend was swept: its process is gone' : 'the backend failed');
        $('join-status').textContent = 'This backend has ended. Spawn again to start a new one for the key.';
      }
    };
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED && !s.ended) showError('The status stream closed.');
    };
  }

  async function spawn(event) {
    event.preventDefault();
    showError('');
    endSession();
    const key = $('key').value.trim();
    const grace = Number($('grace').value);
    const warm = $('warm').checked;
    const headers = { 'content-type': 'application/json' };
    const apiToken = $('api-token').value.trim();
    if (apiToken) headers.authorization = `Bearer ${apiToken}`;
    $('spawn').disabled = true;
    let res;
    let body;
    try {
      res = await fetch('/v1/backends', {
        method: 'POST',
        headers,
        body: JSON.stringify({ ...(warm ? { pool: POOL } : { image: IMAGE }), key, gracePeriodSeconds: grace }),
      });
      body = await res.json().catch(() => ({}));
    } catch (err) {
      showError(`The API cannot be reached: ${err.message}`);
      return;
    } finally {
      $('spawn').disabled = false;
    }
    if (!res.ok) {
      showError(`${res.status}: ${(body.error && body.error.message) || res.statusText}`);
      return;
    }
    const s = {
      name: body.name,
      url: body.url,
      token: new URL(body.url).searchParams.get(TOKEN_PARAM),
      grace: body.spec.gracePeriodSeconds,
      events: null,
      ws: null,
      userClosed: false,
      ended: false,
      /** Phase → the time it was reached, from the status stream. */
      phases: {},
      apiHeaders: apiToken ? { authorization: `Bearer ${apiToken}` } : {},
    };
    session = s;
    $('session').hidden = false;
    $('backend-name').textContent = s.name;
    $('join-status').textContent =
      res.status === 201
        ? `You started a new backend for key “${key}”.`
        : `You joined the backend already running for key “${key}”: you share it with everyone on this key.`;
    const share = new URL(location.href);
    share.search = new URLSearchParams({ key, grace: String(grace), warm: warm ? '1' : '0' }).toString();
    $('share-link').href = share.toString();
    $('phase-history').replaceChildren();
    $('launch').textContent = '–';
    $('launch').className = '';
    $('counter').textContent = '–';
    $('clients').textContent = '–';
    $('clients-hint').textContent = '';
    setConnected(false, 'waiting for the backend to be Ready');
    follow(s);
  }

  $('spawn-form').addEventListener('submit', spawn);
  $('increment').addEventListener('click', () => {
    if (session && session.ws) session.ws.send(JSON.stringify({ type: 'increment' }));
  });
  $('disconnect').addEventListener('click', () => {
    if (!session || !session.ws) return;
    session.userClosed = true;
    session.ws.close();
  });
})();
