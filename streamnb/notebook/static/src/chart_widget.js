// The front end of streamnb's live chart (an anywidget ESM module).
//
// Source of ../chart.js: `bash build.sh` bundles this file with vega,
// vega-lite and vega-embed into one offline ES module (no CDN at run time).
//
// Protocol with streamnb/notebook/chart.py (all through synced traits):
//   spec      the Vega-Lite spec; its data is the named dataset `dataset`
//   snapshot  {seq, rows}: every row, as of change number `seq`
//   change    {seq, remove, insert}: change number `seq`, only the rows that
//             changed since change seq - 1; `remove` lists the `__id` of rows
//             that are gone, `insert` holds new rows and new versions of rows
//             (which replace the rows with the same `__id`)
//   event_time {stream_time, late_events, late_windows} of a windowed table:
//             set as the spec's parameters (Vega signals) streamnb_stream_time,
//             streamnb_late_events and streamnb_late_windows, which draw the
//             stream-time rule and the title; the chart is not re-rendered
// The kernel sends changes even while a cell is running; the browser never
// needs an answer from a busy kernel. When it notices a missing change
// (a page reload, a model made late) it asks for a new snapshot with
// {type: "resync"}, which the kernel answers once it is idle.
import embed, { vega } from "vega-embed";

/** One store of rows per widget model, shared by all of its views. */
class Store {
  constructor(model) {
    this.model = model;
    this.rows = new Map();
    this.seq = -1;
    this.stale = false;
    this.asked = -1;
    this.listeners = new Set();
    this.onSnapshot = () => this.loadSnapshot(model.get("snapshot"));
    this.onChange = () => this.applyChange(model.get("change"));
    model.on("change:snapshot", this.onSnapshot);
    model.on("change:change", this.onChange);
    this.onSnapshot();
    this.onChange();
  }

  loadSnapshot(snap) {
    if (!snap || typeof snap.seq !== "number") return;
    if (snap.seq < this.seq || (snap.seq === this.seq && !this.stale)) return;
    this.rows = new Map(snap.rows.map((row) => [row.__id, row]));
    this.seq = snap.seq;
    this.stale = false;
    this.emit({ reset: true });
  }

  applyChange(change) {
    if (!change || typeof change.seq !== "number" || change.seq <= this.seq) return;
    if (change.seq !== this.seq + 1) {
      // A change went missing: apply this one anyway and ask for every row.
      this.stale = true;
      if (this.asked !== change.seq) {
        this.asked = change.seq;
        this.model.send({ type: "resync", seq: this.seq });
      }
    }
    for (const id of change.remove) this.rows.delete(id);
    for (const row of change.insert) this.rows.set(row.__id, row);
    this.seq = change.seq;
    this.emit({ reset: false, remove: change.remove, insert: change.insert });
  }

  emit(update) {
    for (const listener of this.listeners) listener(update);
  }

  dispose() {
    this.model.off("change:snapshot", this.onSnapshot);
    this.model.off("change:change", this.onChange);
    this.listeners.clear();
  }
}

const stores = new Map();

function storeFor(model) {
  const uid = model.get("uid");
  let store = stores.get(uid);
  if (!store) {
    store = new Store(model);
    stores.set(uid, store);
  }
  return store;
}

// Vega writes into the row objects it is given (parsed dates, tuple ids), so
// every view gets its own copies.
const copies = (rows) => Array.from(rows, (row) => ({ ...row }));

function changeset(store, update) {
  if (update.reset) {
    return vega.changeset().remove(vega.truthy).insert(copies(store.rows.values()));
  }
  const gone = new Set(update.remove);
  for (const row of update.insert) gone.add(row.__id);
  let cs = vega.changeset();
  if (gone.size) cs = cs.remove((datum) => gone.has(datum.__id));
  return cs.insert(copies(update.insert));
}

// Vega signal (the spec's parameter) -> key of the event_time trait.
const EVENT_TIME_SIGNALS = {
  streamnb_stream_time: ["stream_time", null],
  streamnb_late_events: ["late_events", 0],
  streamnb_late_windows: ["late_windows", 0],
};

/** Set the event-time signals the spec defines; true when any was set. */
function setEventTime(view, eventTime) {
  let set = false;
  for (const [signal, [key, fallback]] of Object.entries(EVENT_TIME_SIGNALS)) {
    const value = eventTime && key in eventTime ? eventTime[key] : fallback;
    try {
      view.signal(signal, value ?? fallback);
      set = true;
    } catch {
      // A chart of your own (chart=) may not define this parameter.
    }
  }
  return set;
}

function initialize({ model }) {
  const uid = model.get("uid");
  stores.get(uid)?.dispose();
  stores.set(uid, new Store(model));
  return () => {
    stores.get(uid)?.dispose();
    stores.delete(uid);
  };
}

function render({ model, el }) {
  const store = storeFor(model);
  const root = document.createElement("div");
  root.className = "streamnb-chart";
  el.appendChild(root);
  let result = null;
  let queue = Promise.resolve();
  let closed = false;

  const show = () => {
    root.dataset.rows = String(store.rows.size);
    root.dataset.seq = String(store.seq);
    const eventTime = model.get("event_time") || {};
    root.dataset.streamTime = String(eventTime.stream_time ?? "");
    root.dataset.lateEvents = String(eventTime.late_events ?? "");
  };

  const draw = async () => {
    if (result) result.finalize();
    result = null;
    root.textContent = "";
    const spec = structuredClone(model.get("spec"));
    try {
      result = await embed(root, spec, { actions: false, renderer: model.get("renderer") || "svg" });
    } catch (err) {
      root.textContent = `streamnb chart: ${err}`;
      return;
    }
    if (closed) return;
    setEventTime(result.view, model.get("event_time"));
    await result.view.change(model.get("dataset"), changeset(store, { reset: true })).runAsync();
    show();
  };

  // Updates run one after the other, never concurrently with a redraw.
  const enqueue = (job) => {
    queue = queue.then(job).catch((err) => console.error("streamnb chart:", err));
  };
  const onUpdate = (update) =>
    enqueue(async () => {
      if (!result || closed) return;
      await result.view.change(model.get("dataset"), changeset(store, update)).runAsync();
      show();
    });

  const onEventTime = () =>
    enqueue(async () => {
      if (!result || closed) return;
      if (setEventTime(result.view, model.get("event_time"))) await result.view.runAsync();
      show();
    });

  store.listeners.add(onUpdate);
  model.on("change:spec", () => enqueue(draw));
  model.on("change:event_time", onEventTime);
  enqueue(draw);

  return () => {
    closed = true;
    store.listeners.delete(onUpdate);
    model.off("change:event_time", onEventTime);
    if (result) result.finalize();
  };
}

export default { initialize, render };
