/**
 * Statechart diagrams generated from an XState v5 machine object (issue 3 item 7): a Mermaid
 * `stateDiagram-v2` for the README and a standalone SVG laid out with ELK (`elkjs`, layered).
 *
 * Everything is read from the machine at run time: `machine.root` and each state node's `states`,
 * `type`, `initial`, `transitions` (`on`), `after`, `always` and `invoke`. Nothing here knows which
 * states the connection machine has, so the diagram follows the machine when it changes.
 *
 * Notation (UML state machines, as XState uses them):
 * - the machine itself is the outermost composite state, named by the machine's `id`;
 * - `[*] -->` marks the initial state of each compound state; final states go `--> [*]` (Mermaid)
 *   or get a double border (SVG);
 * - an arrow is a transition with a target, labelled `event [guard]`, `after delayName [guard]`
 *   (delayed) or `[guard]` (eventless, `always`); an unguarded transition listed after guarded
 *   ones for the same trigger is labelled `[else]`, since it is taken only when they all fail;
 * - a targetless transition does not change state: it is listed inside its state as
 *   `event (internal)` when it runs actions, or `event (ignored)` when it only swallows the event;
 * - `invokes src` lists the actors a state invokes (they live exactly as long as the state).
 *
 * Output is deterministic: document order throughout, and every number in the SVG is rounded to
 * one decimal place.
 */
// elkjs is CommonJS: Node hands its `module.exports` to a default import, and the constructor is
// also on its `default` property, which is where its typings put it.
import elkModule from 'elkjs/lib/elk.bundled.js';
import type { ElkExtendedEdge, ElkLabel, ElkNode, ElkPoint } from 'elkjs/lib/elk-api.js';
import type { AnyStateMachine, AnyStateNode, AnyTransitionDefinition } from 'xstate';

/** What makes a transition fire. */
type Trigger = 'event' | 'delay' | 'eventless';

/** One transition of the chart, with the text it is drawn with. */
interface ChartTransition {
  readonly source: AnyStateNode;
  /** Empty for a targetless transition (drawn inside its source state). */
  readonly targets: readonly AnyStateNode[];
  readonly trigger: Trigger;
  /** `event [guard]`, `after delay [guard]`, `[guard]`; with ` (reenter)` when it re-enters. */
  readonly label: string;
  /** Targetless transition without actions: it only keeps an ancestor from handling the event. */
  readonly ignored: boolean;
}

/** Readable name of a guard: its type, or a formula for XState's `and`/`or`/`not`/`stateIn`. */
function guardName(guard: unknown): string {
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') {
    const fn = guard as { name?: unknown; guards?: unknown; stateValue?: unknown };
    const inner = Array.isArray(fn.guards) ? (fn.guards as unknown[]).map(guardName) : [];
    // XState's higher-order guards are functions named after the combinator, holding their operands.
    if (fn.name === 'not' && inner.length === 1) return `!${inner[0] ?? ''}`;
    if (fn.name === 'and' && inner.length > 0) return `(${inner.join(' && ')})`;
    if (fn.name === 'or' && inner.length > 0) return `(${inner.join(' || ')})`;
    if (fn.name === 'stateIn' && fn.stateValue !== undefined) return `in ${JSON.stringify(fn.stateValue)}`;
    return typeof fn.name === 'string' && fn.name !== '' ? fn.name : 'inline guard';
  }
  if (typeof guard === 'object' && guard !== null && 'type' in guard) {
    if (typeof guard.type === 'string') return guard.type;
  }
  return 'guard';
}

/** Readable trigger of an event transition: XState's internal done/error events get short names. */
function eventName(eventType: string): string {
  const forms: Array<[string, string]> = [
    ['xstate.done.actor.', 'done'],
    ['xstate.error.actor.', 'error'],
    ['xstate.snapshot.', 'snapshot'],
  ];
  for (const [prefix, name] of forms) {
    if (eventType.startsWith(prefix)) return `${name}(${eventType.slice(prefix.length)})`;
  }
  if (eventType.startsWith('xstate.done.state.')) return 'done';
  return eventType;
}

/** Name of a delay: the key of a named delay, or `N ms` for a literal one. */
function delayName(delay: unknown): string {
  if (typeof delay === 'number') return `${delay} ms`;
  if (typeof delay === 'string') return /^\d+$/.test(delay) ? `${delay} ms` : delay;
  return 'delay';
}

/**
 * The chart transitions of `list`, one trigger's candidates in document order. A guarded candidate
 * is labelled with its guard; an unguarded one after a guarded one with `[else]`.
 */
function fromList(
  list: readonly AnyTransitionDefinition[],
  trigger: Trigger,
  triggerText: string,
): ChartTransition[] {
  let guardedBefore = false;
  return list.map((t) => {
    let guardText = '';
    if (t.guard !== undefined) {
      guardText = `[${guardName(t.guard)}]`;
      guardedBefore = true;
    } else if (guardedBefore) {
      guardText = '[else]';
    }
    const parts = [triggerText, guardText].filter((p) => p !== '');
    if (parts.length === 0) parts.push('always');
    const targets = t.target ?? [];
    return {
      source: t.source,
      targets,
      trigger,
      label: parts.join(' ') + (t.reenter && targets.length > 0 ? ' (reenter)' : ''),
      ignored: targets.length === 0 && t.actions.length === 0,
    };
  });
}

/** Every transition defined on `node` itself: `on` (and invoke results), then `after`, then `always`. */
function transitionsOf(node: AnyStateNode): ChartTransition[] {
  const delayed = node.after;
  // `transitions` also holds the delayed transitions under XState's internal after-event names.
  const delayedTypes = new Set<string>(delayed.map((t) => String(t.eventType)));
  const out: ChartTransition[] = [];
  for (const [eventType, list] of node.transitions) {
    if (delayedTypes.has(eventType)) continue;
    out.push(...fromList(list, 'event', eventName(eventType)));
  }
  // Candidates of one delay are grouped, so `[else]` refers to the same delay's guards.
  const byDelay = new Map<string, AnyTransitionDefinition[]>();
  for (const t of delayed) {
    const key = String(t.eventType);
    const group = byDelay.get(key) ?? [];
    group.push(t);
    byDelay.set(key, group);
  }
  for (const group of byDelay.values()) {
    const first = group[0] as (typeof delayed)[number];
    out.push(...fromList(group, 'delay', `after ${delayName(first.delay)}`));
  }
  out.push(...fromList(node.always ?? [], 'eventless', ''));
  return out;
}

/** Child state nodes in document order. */
function childrenOf(node: AnyStateNode): AnyStateNode[] {
  return Object.values(node.states);
}

/** All state nodes below `node`, depth first, document order (not `node` itself). */
function descendantsOf(node: AnyStateNode): AnyStateNode[] {
  return childrenOf(node).flatMap((child) => [child, ...descendantsOf(child)]);
}

/** Targets of the initial transition of a compound node (none for atomic, final, parallel nodes). */
function initialTargets(node: AnyStateNode): readonly AnyStateNode[] {
  return node.type === 'compound' ? node.initial.target : [];
}

/**
 * `invokes src` for each actor `node` invokes, with ` as id` when an explicit ID differs from the
 * src name. XState names inline logic `xstate.invoke.<i>.<state id>` and unnamed invocations
 * `<i>.<state id>`; those generated names are left out.
 */
function invokeLines(node: AnyStateNode): string[] {
  return node.invoke.map((inv, i) => {
    const id = inv.id === `${i}.${node.id}` ? null : inv.id;
    const src = typeof inv.src === 'string' && !inv.src.startsWith('xstate.invoke.') ? inv.src : null;
    if (src === null) return `invokes ${id ?? 'an inline actor'}`;
    return id === null || id === src ? `invokes ${src}` : `invokes ${src} as ${id}`;
  });
}

/** Text lines drawn inside a state under its name: invoked actors, then targetless transitions. */
function innerLines(node: AnyStateNode, transitions: readonly ChartTransition[]): string[] {
  const internal = transitions
    .filter((t) => t.source === node && t.targets.length === 0)
    .map((t) => `${t.label} ${t.ignored ? '(ignored)' : '(internal)'}`);
  return [...invokeLines(node), ...internal];
}

/** Whether `node` is `ancestor` or lies below it. */
function isWithin(node: AnyStateNode, ancestor: AnyStateNode): boolean {
  for (let n: AnyStateNode | undefined = node; n; n = n.parent) if (n === ancestor) return true;
  return false;
}

/** The innermost state node strictly containing every node of `nodes` (undefined: only the canvas). */
function commonContainer(nodes: readonly AnyStateNode[]): AnyStateNode | undefined {
  const first = nodes[0];
  if (!first) return undefined;
  for (let c = first.parent; c; c = c.parent) {
    if (nodes.every((n) => n !== c && isWithin(n, c))) return c;
  }
  return undefined;
}

/** Every transition of the machine, by state node in document order. */
function allTransitions(machine: AnyStateMachine): ChartTransition[] {
  const root = machine.root as AnyStateNode;
  return [root, ...descendantsOf(root)].flatMap(transitionsOf);
}

// ---------------------------------------------------------------------------------------------
// Mermaid

/** Words of Mermaid's state diagram grammar that cannot be state IDs. */
const MERMAID_RESERVED = new Set(['state', 'note', 'end', 'direction', 'classDef', 'class', 'style', 'as', 'left', 'right', 'of', 'default']);

/**
 * Mermaid IDs for every state node: the state's key when it is a plain identifier used once in
 * the machine, otherwise its path joined by `_` (made unique), since Mermaid IDs are global.
 */
function mermaidIds(root: AnyStateNode): Map<AnyStateNode, string> {
  const nodes = [root, ...descendantsOf(root)];
  const keyCount = new Map<string, number>();
  for (const n of nodes) keyCount.set(n.key, (keyCount.get(n.key) ?? 0) + 1);
  const ids = new Map<AnyStateNode, string>();
  const used = new Set<string>();
  for (const n of nodes) {
    const plain = /^[A-Za-z][A-Za-z0-9_]*$/.test(n.key) && !MERMAID_RESERVED.has(n.key) && keyCount.get(n.key) === 1;
    let id = plain ? n.key : `s_${[root.key, ...n.path].join('_').replace(/[^A-Za-z0-9_]/g, '_')}`;
    while (used.has(id)) id += '_';
    used.add(id);
    ids.set(n, id);
  }
  return ids;
}

/** Text made safe for a Mermaid label (no line breaks; `;`, `#`, `"`, `<`, `>` as entities). */
function mermaidText(text: string): string {
  return text
    .replace(/\s+/g, ' ')
    .replace(/#/g, '#35;')
    .replace(/;/g, '#59;')
    .replace(/"/g, '#quot;')
    .replace(/</g, '#lt;')
    .replace(/>/g, '#gt;');
}

/**
 * The machine as a Mermaid `stateDiagram-v2` (text, lines joined by `\n`, ending with a newline).
 * The machine is the outermost composite state; compound states are nested composites. Parallel
 * transitions between the same two states share one arrow, one `<br/>`-separated label line per
 * transition. A compound state's transition into one of its own descendants starts from a dashed
 * helper box `any <state> state` inside it (Mermaid cannot draw an arrow from a composite's border
 * to its own child). A composite's own lines (invoked actors, targetless transitions) go in a note.
 * See the module comment for the notation.
 *
 * @param machine any XState v5 machine (`createMachine` or `setup().createMachine`).
 * @returns the diagram, starting with `stateDiagram-v2`; the same machine always gives the same text.
 */
export function toMermaid(machine: AnyStateMachine): string {
  const root = machine.root as AnyStateNode;
  const ids = mermaidIds(root);
  const idOf = (n: AnyStateNode): string => ids.get(n) ?? n.key;
  const transitions = allTransitions(machine);

  // Helper boxes for compound states with transitions into their own descendants.
  const taken = new Set(ids.values());
  const anchors = new Map<AnyStateNode, string>();
  for (const t of transitions) {
    if (anchors.has(t.source) || !t.targets.some((g) => g !== t.source && isWithin(g, t.source))) continue;
    let id = `${idOf(t.source)}_any`;
    while (taken.has(id)) id += '_';
    taken.add(id);
    anchors.set(t.source, id);
  }

  // Each arrow goes in the block of the innermost composite holding both ends (undefined: top
  // level); arrows with the same ends in the same block are merged.
  const arrows = new Map<AnyStateNode | undefined, Map<string, string[]>>();
  for (const t of transitions) {
    for (const target of t.targets) {
      const inward = target !== t.source && isWithin(target, t.source);
      const container = inward ? t.source : commonContainer([t.source, target]);
      const from = inward ? (anchors.get(t.source) ?? idOf(t.source)) : idOf(t.source);
      const block = arrows.get(container) ?? new Map<string, string[]>();
      const ends = `${from} --> ${idOf(target)}`;
      block.set(ends, [...(block.get(ends) ?? []), mermaidText(t.label)]);
      arrows.set(container, block);
    }
  }
  const arrowLines = (container: AnyStateNode | undefined): string[] =>
    [...(arrows.get(container) ?? new Map<string, string[]>())].map(([ends, labels]) => `${ends} : ${labels.join('<br/>')}`);

  const lines: string[] = ['stateDiagram-v2', '  classDef anyState fill:#ffffff,stroke:#888888,stroke-dasharray:3 3'];
  const emit = (depth: number, text: string): void => {
    lines.push(`${'  '.repeat(depth)}${text}`);
  };
  const declare = (node: AnyStateNode, depth: number): void => {
    const id = idOf(node);
    const inner = innerLines(node, transitions);
    const children = childrenOf(node);
    const name = node.type === 'history' ? `${node.key} (${node.history === 'deep' ? 'H*' : 'H'})` : node.key;
    if (children.length === 0) {
      // Declared with its name first, so that the lines below are shown under it, not instead of it.
      emit(depth, `state "${mermaidText(name)}" as ${id}`);
      for (const line of inner) emit(depth, `${id} : ${mermaidText(line)}`);
      return;
    }
    emit(depth, `state "${mermaidText(name)}" as ${id} {`);
    for (const target of initialTargets(node)) emit(depth + 1, `[*] --> ${idOf(target)}`);
    // Mermaid puts a state in the last composite that mentions it, so arrows to deeper states come
    // before the nested declarations that put those states where they belong.
    for (const arrow of arrowLines(node)) emit(depth + 1, arrow);
    for (const child of children) if (child.type === 'final') emit(depth + 1, `${idOf(child)} --> [*]`);
    const anchor = anchors.get(node);
    if (anchor !== undefined) emit(depth + 1, `state "any ${mermaidText(node.key)} state" as ${anchor}`);
    children.forEach((child, i) => {
      // Regions of a parallel state are separated by `--`.
      if (node.type === 'parallel' && i > 0) emit(depth + 1, '--');
      declare(child, depth + 1);
    });
    emit(depth, '}');
    // A composite's title is one line (more would be drawn over its content), so its lines go in a note.
    if (inner.length > 0) {
      emit(depth, `note right of ${id}`);
      for (const line of inner) emit(depth + 1, mermaidText(line));
      emit(depth, 'end note');
    }
  };
  emit(1, `[*] --> ${idOf(root)}`);
  declare(root, 1);
  for (const arrow of arrowLines(undefined)) emit(1, arrow);
  for (const anchor of anchors.values()) emit(1, `class ${anchor} anyState`);
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// SVG

/**
 * Monospace font stack found on common systems (nothing is downloaded). Text widths are estimated
 * at 0.62 em per character: monospace fonts are about 0.6 em wide, plus a little slack.
 */
const FONT = "'DejaVu Sans Mono', Menlo, Consolas, 'Liberation Mono', monospace";
const CHAR_EM = 0.62;
const NAME_SIZE = 14;
const LINE_SIZE = 12;
const LABEL_SIZE = 12;
const LINE_HEIGHT = 16;
const PAD_X = 14;
const PAD_Y = 9;
const INITIAL_DOT = 12;
const ANCHOR = 8;
const FINAL_INSET = 4;
const MARGIN = 12;

const COLOR = {
  text: '#1f2933',
  muted: '#52606d',
  stateFill: '#eef4fb',
  stateStroke: '#3e5c76',
  finalFill: '#f3f0f7',
  compositeFill: '#fbfcfd',
  rootFill: '#ffffff',
  compositeStroke: '#7b8794',
  edge: '#3e4c59',
  delayEdge: '#8d6a00',
  eventlessEdge: '#5f6b7a',
} as const;

/** Estimated width in px of `text` at `size` px in the monospace font. */
function textWidth(text: string, size: number): number {
  return [...text].length * size * CHAR_EM;
}

/** A number for the SVG: rounded to 0.1 px, no trailing zeros, never `-0`. */
function num(value: number): string {
  const rounded = Math.round(value * 10) / 10;
  return Object.is(rounded, -0) || rounded === 0 ? '0' : String(rounded);
}

/** Text escaped for XML character data and attribute values. */
function xml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** ELK IDs of the state nodes: XState's unique `id`s (dot paths), prefixed so they never clash. */
function elkId(node: AnyStateNode): string {
  return `state:${node.id}`;
}

/** Layout options for the whole drawing (ELK layered, top to bottom, orthogonal edges). */
const LAYOUT_OPTIONS: Record<string, string> = {
  'elk.algorithm': 'layered',
  'elk.direction': 'DOWN',
  'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
  'elk.edgeRouting': 'ORTHOGONAL',
  'elk.edgeLabels.placement': 'CENTER',
  'elk.layered.considerModelOrder.strategy': 'NODES_AND_EDGES',
  'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
  'elk.spacing.nodeNode': '28',
  'elk.layered.spacing.nodeNodeBetweenLayers': '34',
  'elk.spacing.edgeNode': '14',
  'elk.spacing.edgeEdge': '10',
  'elk.layered.spacing.edgeNodeBetweenLayers': '14',
  'elk.layered.spacing.edgeEdgeBetweenLayers': '10',
  'elk.spacing.edgeLabel': '3',
  'elk.json.edgeCoords': 'ROOT',
  'elk.json.shapeCoords': 'ROOT',
  'elk.padding': `[top=${MARGIN},left=${MARGIN},bottom=${MARGIN},right=${MARGIN}]`,
};

/** What the drawing needs to know about one ELK node besides its laid-out box. */
interface NodeInfo {
  readonly kind: 'state' | 'composite' | 'initial' | 'anchor';
  readonly state: AnyStateNode;
  readonly lines: readonly string[];
}

/** What the drawing needs to know about one ELK edge besides its route. */
interface EdgeInfo {
  readonly trigger: Trigger | 'initial';
}

/** Height of a composite's header: name plus its own lines. */
function headerHeight(lines: readonly string[]): number {
  return PAD_Y + LINE_HEIGHT + lines.length * LINE_HEIGHT + PAD_Y;
}

/**
 * The ELK graph of the machine: one node per state (compound states hold their children and a
 * dot for their initial transition), one edge per transition target, labels sized for the font.
 */
function elkGraph(
  machine: AnyStateMachine,
  nodeInfo: Map<string, NodeInfo>,
  edgeInfo: Map<string, EdgeInfo>,
): ElkNode {
  const root = machine.root as AnyStateNode;
  const transitions = allTransitions(machine);
  // A compound state's transition into its own descendant starts at an anchor inside the
  // compound, under its header; drawn as a small square tied to the header line.
  const anchorOf = (node: AnyStateNode): string => `anchor:${node.id}`;
  const inwardSources = new Set(
    transitions.filter((t) => t.targets.some((g) => g !== t.source && isWithin(g, t.source))).map((t) => t.source),
  );
  const initialEdges: ElkExtendedEdge[] = [];
  const build = (node: AnyStateNode): ElkNode => {
    const lines = innerLines(node, transitions);
    const children = childrenOf(node);
    if (children.length === 0) {
      nodeInfo.set(elkId(node), { kind: 'state', state: node, lines });
      const final = node.type === 'final' ? 2 * FINAL_INSET : 0;
      const width = Math.max(
        textWidth(node.key, NAME_SIZE),
        ...lines.map((l) => textWidth(l, LINE_SIZE)),
        48,
      );
      const height = LINE_HEIGHT + (lines.length > 0 ? 6 + lines.length * LINE_HEIGHT : 0);
      return { id: elkId(node), width: width + 2 * PAD_X + final, height: height + 2 * PAD_Y + final };
    }
    nodeInfo.set(elkId(node), { kind: 'composite', state: node, lines });
    const elkChildren: ElkNode[] = [];
    for (const [i, target] of initialTargets(node).entries()) {
      const dotId = `initial:${node.id}:${i}`;
      nodeInfo.set(dotId, { kind: 'initial', state: node, lines: [] });
      elkChildren.push({ id: dotId, width: INITIAL_DOT, height: INITIAL_DOT });
      const edgeId = `edge:initial:${node.id}:${i}`;
      edgeInfo.set(edgeId, { trigger: 'initial' });
      initialEdges.push({ id: edgeId, sources: [dotId], targets: [elkId(target)] });
    }
    elkChildren.push(...children.map(build));
    const titleWidth = Math.max(textWidth(node.key, NAME_SIZE), ...lines.map((l) => textWidth(l, LINE_SIZE)));
    if (inwardSources.has(node)) {
      nodeInfo.set(anchorOf(node), { kind: 'anchor', state: node, lines: [] });
      elkChildren.push({ id: anchorOf(node), width: ANCHOR, height: ANCHOR });
    }
    return {
      id: elkId(node),
      children: elkChildren,
      layoutOptions: {
        'elk.padding': `[top=${headerHeight(lines) + 6},left=16,bottom=16,right=16]`,
        'elk.nodeSize.constraints': 'MINIMUM_SIZE',
        'elk.nodeSize.minimum': `(${num(titleWidth + 2 * PAD_X)},${num(headerHeight(lines) + 20)})`,
      },
    };
  };
  const rootNode = build(root);
  const edges: ElkExtendedEdge[] = [...initialEdges];
  // Parallel transitions of one kind between the same two states share an arrow: one label line each.
  const groups = new Map<string, { source: AnyStateNode; target: AnyStateNode; trigger: Trigger; labels: string[] }>();
  for (const t of transitions) {
    for (const target of t.targets) {
      const key = `${t.source.id}\u0000${target.id}\u0000${t.trigger}`;
      const group = groups.get(key) ?? { source: t.source, target, trigger: t.trigger, labels: [] };
      group.labels.push(t.label);
      groups.set(key, group);
    }
  }
  let n = 0;
  for (const group of groups.values()) {
    const id = `edge:${n++}`;
    edgeInfo.set(id, { trigger: group.trigger });
    const inward = group.target !== group.source && isWithin(group.target, group.source);
    const label: ElkLabel = {
      id: `${id}:label`,
      text: group.labels.join('\n'),
      width: Math.max(...group.labels.map((l) => textWidth(l, LABEL_SIZE))) + 6,
      height: group.labels.length * LINE_HEIGHT,
    };
    const source = inward ? anchorOf(group.source) : elkId(group.source);
    edges.push({ id, sources: [source], targets: [elkId(group.target)], labels: [label] });
  }
  return { id: 'canvas', layoutOptions: LAYOUT_OPTIONS, children: [rootNode], edges };
}

/** Every node of a laid-out ELK graph, parents before children. */
function flatNodes(node: ElkNode): ElkNode[] {
  return [node, ...(node.children ?? []).flatMap(flatNodes)];
}

/** The SVG path data of an edge's route (its sections' points, in order). */
function routePoints(edge: ElkExtendedEdge): ElkPoint[] {
  return (edge.sections ?? []).flatMap((s) => [s.startPoint, ...(s.bendPoints ?? []), s.endPoint]);
}

const LEGEND_HEIGHT = 30;

/**
 * The key under the chart, starting at `top` px: line styles of the three triggers, the anchor of
 * a compound state's own transitions, the final-state border. Returns its elements and width (px).
 */
function legendOf(top: number): { elements: string[]; width: number } {
  const y = top + LEGEND_HEIGHT / 2 - 2;
  const elements: string[] = [];
  let x = MARGIN + 4;
  const sample = (draw: (x0: number) => string[], text: string, sampleWidth: number): void => {
    elements.push(...draw(x));
    x += sampleWidth + 8;
    elements.push(textEl(x, y + 4, text, LABEL_SIZE, ` fill="${COLOR.muted}"`));
    x += textWidth(text, LABEL_SIZE) + 28;
  };
  const line = (color: 'edge' | 'delayEdge' | 'eventlessEdge', dash: string) => (x0: number) => [
    `<path d="M${num(x0)},${num(y)} L${num(x0 + 34)},${num(y)}" fill="none" stroke="${COLOR[color]}" stroke-width="1.25"${dash} marker-end="url(#arrow-${color})"/>`,
  ];
  sample(line('edge', ''), 'event [guard]', 34);
  sample(line('delayEdge', ' stroke-dasharray="6 4"'), 'after delay [guard]', 34);
  sample(line('eventlessEdge', ' stroke-dasharray="2 3"'), '[guard] (eventless)', 34);
  sample(
    (x0) => [
      `<line x1="${num(x0 + 4)}" y1="${num(y - 8)}" x2="${num(x0 + 4)}" y2="${num(y)}" stroke="${COLOR.edge}" stroke-width="1.25"/>`,
      `<rect x="${num(x0)}" y="${num(y - 4)}" width="${ANCHOR}" height="${ANCHOR}" fill="${COLOR.edge}"/>`,
      `<path d="M${num(x0 + 4)},${num(y + 4)} L${num(x0 + 4)},${num(y + 9)} L${num(x0 + 22)},${num(y + 9)}" fill="none" stroke="${COLOR.edge}" stroke-width="1.25" marker-end="url(#arrow-edge)"/>`,
    ],
    'transition of the enclosing state',
    24,
  );
  sample(
    (x0) => [
      `<rect x="${num(x0)}" y="${num(y - 8)}" width="26" height="16" rx="5" fill="${COLOR.finalFill}" stroke="${COLOR.stateStroke}" stroke-width="1.5"/>`,
      `<rect x="${num(x0 + 3)}" y="${num(y - 5)}" width="20" height="10" rx="3" fill="none" stroke="${COLOR.stateStroke}" stroke-width="1.5"/>`,
    ],
    'final state',
    26,
  );
  return { elements, width: x - 28 + MARGIN + 4 };
}

/** SVG elements of one text line at (`x`, baseline `y`). */
function textEl(x: number, y: number, text: string, size: number, attrs: string): string {
  return `<text x="${num(x)}" y="${num(y)}" font-size="${size}"${attrs}>${xml(text)}</text>`;
}

/**
 * The machine as a standalone SVG document (UTF-8 text, ending with a newline): no scripts, no
 * external fonts or resources. Laid out by ELK's layered algorithm from top to bottom: rounded
 * boxes for states, a composite box per compound state around its children (the machine is the
 * outermost one), a double border for final states, a dot and arrow for each initial state, and
 * one labelled arrow per transition target (solid: event, dashed: `after`, dotted: eventless).
 * Sizes are in px; coordinates are rounded to 0.1 px so the text is the same on every run.
 *
 * @param machine any XState v5 machine.
 * @returns a promise of the SVG text (ELK lays out asynchronously); rejects only if ELK rejects
 *   the graph (an internal error, not expected for any machine).
 */
export async function toSvg(machine: AnyStateMachine): Promise<string> {
  const nodeInfo = new Map<string, NodeInfo>();
  const edgeInfo = new Map<string, EdgeInfo>();
  const graph = elkGraph(machine, nodeInfo, edgeInfo);
  const elk = new elkModule.default();
  const laid = await elk.layout(graph);
  const legend = legendOf(laid.height ?? 0);
  const width = Math.max(laid.width ?? 0, legend.width);
  const height = (laid.height ?? 0) + LEGEND_HEIGHT;
  const root = machine.root as AnyStateNode;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${num(width)}" height="${num(height)}" viewBox="0 0 ${num(width)} ${num(height)}" font-family="${xml(FONT)}" fill="${COLOR.text}">`,
    `<title>${xml(`Statechart of the ${root.key} machine`)}</title>`,
    '<defs>',
    ...(['edge', 'delayEdge', 'eventlessEdge'] as const).map(
      (c) =>
        `<marker id="arrow-${c}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,1 L9,5 L0,9 z" fill="${COLOR[c]}"/></marker>`,
    ),
    '</defs>',
    `<rect x="0" y="0" width="${num(width)}" height="${num(height)}" fill="#ffffff"/>`,
  );

  // Layers: boxes (parents before children, so children lie on top), then arrows, then all text,
  // so that no arrow hides a word. Text outside state boxes gets a white halo to stay readable.
  const shapes: string[] = [];
  const arrows: string[] = [];
  const texts: string[] = [];
  const boxes = new Map(flatNodes(laid).map((n) => [n.id, n]));
  const halo = ' stroke="#ffffff" stroke-width="4" stroke-linejoin="round" paint-order="stroke"';
  for (const n of flatNodes(laid)) {
    const info = nodeInfo.get(n.id);
    if (!info) continue;
    const x = n.x ?? 0;
    const y = n.y ?? 0;
    const w = n.width ?? 0;
    const h = n.height ?? 0;
    if (info.kind === 'initial') {
      shapes.push(`<circle cx="${num(x + w / 2)}" cy="${num(y + h / 2)}" r="${num(w / 2)}" fill="${COLOR.text}"/>`);
      continue;
    }
    const state = info.state;
    if (info.kind === 'anchor') {
      const parent = nodeInfo.get(elkId(state));
      const headerY = (boxes.get(elkId(state))?.y ?? 0) + headerHeight(parent?.lines ?? []);
      shapes.push(
        `<line x1="${num(x + w / 2)}" y1="${num(headerY)}" x2="${num(x + w / 2)}" y2="${num(y)}" stroke="${COLOR.edge}" stroke-width="1.25"/>`,
        `<rect x="${num(x)}" y="${num(y)}" width="${num(w)}" height="${num(h)}" fill="${COLOR.edge}"/>`,
      );
      continue;
    }
    if (info.kind === 'composite') {
      const fill = state === root ? COLOR.rootFill : COLOR.compositeFill;
      const sepY = y + headerHeight(info.lines);
      shapes.push(
        `<rect x="${num(x)}" y="${num(y)}" width="${num(w)}" height="${num(h)}" rx="12" fill="${fill}" stroke="${COLOR.compositeStroke}" stroke-width="1.5"/>`,
        `<line x1="${num(x)}" y1="${num(sepY)}" x2="${num(x + w)}" y2="${num(sepY)}" stroke="${COLOR.compositeStroke}" stroke-width="1" stroke-dasharray="2 3"/>`,
      );
      texts.push(
        textEl(x + PAD_X, y + PAD_Y + LINE_HEIGHT - 3, state.key, NAME_SIZE, ` font-weight="bold"${halo}`),
        ...info.lines.map((line, i) =>
          textEl(x + PAD_X, y + PAD_Y + (i + 2) * LINE_HEIGHT - 3, line, LINE_SIZE, ` fill="${COLOR.muted}"${halo}`),
        ),
      );
      continue;
    }
    const final = state.type === 'final';
    const inset = final ? FINAL_INSET : 0;
    shapes.push(
      `<rect x="${num(x)}" y="${num(y)}" width="${num(w)}" height="${num(h)}" rx="10" fill="${final ? COLOR.finalFill : COLOR.stateFill}" stroke="${COLOR.stateStroke}" stroke-width="1.5"/>`,
    );
    if (final) {
      shapes.push(
        `<rect x="${num(x + inset)}" y="${num(y + inset)}" width="${num(w - 2 * inset)}" height="${num(h - 2 * inset)}" rx="7" fill="none" stroke="${COLOR.stateStroke}" stroke-width="1.5"/>`,
      );
    }
    const nameY = y + inset + PAD_Y + LINE_HEIGHT - 3;
    texts.push(textEl(x + w / 2, nameY, state.key, NAME_SIZE, ' font-weight="bold" text-anchor="middle"'));
    if (info.lines.length > 0) {
      const sepY = y + inset + PAD_Y + LINE_HEIGHT + 3;
      shapes.push(
        `<line x1="${num(x + inset)}" y1="${num(sepY)}" x2="${num(x + w - inset)}" y2="${num(sepY)}" stroke="${COLOR.stateStroke}" stroke-width="0.75"/>`,
      );
      info.lines.forEach((line, i) => {
        texts.push(textEl(x + PAD_X + inset, sepY + (i + 1) * LINE_HEIGHT - 3, line, LINE_SIZE, ` fill="${COLOR.muted}"`));
      });
    }
  }

  for (const edge of flatNodes(laid).flatMap((n) => n.edges ?? [])) {
    const info = edgeInfo.get(edge.id);
    if (!info) continue;
    const points = routePoints(edge);
    if (points.length < 2) continue;
    const d = points.map((p, i) => `${i === 0 ? 'M' : 'L'}${num(p.x)},${num(p.y)}`).join(' ');
    const color = info.trigger === 'delay' ? 'delayEdge' : info.trigger === 'eventless' ? 'eventlessEdge' : 'edge';
    const dash =
      info.trigger === 'delay' ? ' stroke-dasharray="6 4"' : info.trigger === 'eventless' ? ' stroke-dasharray="2 3"' : '';
    arrows.push(
      `<path d="${d}" fill="none" stroke="${COLOR[color]}" stroke-width="1.25"${dash} marker-end="url(#arrow-${color})"/>`,
    );
    for (const label of edge.labels ?? []) {
      const lx = label.x ?? 0;
      const ly = label.y ?? 0;
      const lw = label.width ?? 0;
      texts.push(
        ...(label.text ?? '')
          .split('\n')
          .map((line, i) =>
            textEl(lx + lw / 2, ly + (i + 1) * LINE_HEIGHT - 4, line, LABEL_SIZE, ` text-anchor="middle" fill="${COLOR[color]}"${halo}`),
          ),
      );
    }
  }
  out.push(...shapes, ...arrows, ...texts, ...legend.elements, '</svg>');
  return `${out.join('\n')}\n`;
}
