/**
 * The statechart generator (issue 3 item 7): the Mermaid diagram and the SVG are derived from the
 * machine object, are deterministic, and `scripts/diagram.ts --check` fails when a committed
 * diagram is stale.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { fromCallback, setup } from 'xstate';
import type { AnyStateMachine, AnyStateNode } from 'xstate';
import { connectionMachine } from '../machines/connection.js';
import { toMermaid, toSvg } from '../scripts/statechart.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/** Every state node of `machine` below its root, depth first. */
function statesOf(machine: AnyStateMachine): AnyStateNode[] {
  const walk = (node: AnyStateNode): AnyStateNode[] =>
    Object.values(node.states).flatMap((child) => [child, ...walk(child)]);
  return walk(machine.root as AnyStateNode);
}

/** Every state node including the root. */
function nodesOf(machine: AnyStateMachine): AnyStateNode[] {
  return [machine.root as AnyStateNode, ...statesOf(machine)];
}

/**
 * The number of transitions the machine defines, counted from its state nodes: `transitions`
 * (which holds `on`, the invoke results and the delayed transitions) plus `always`; a transition
 * with several targets counts once per target, as it is drawn.
 */
function transitionCount(machine: AnyStateMachine): number {
  let count = 0;
  for (const node of nodesOf(machine)) {
    const all = [...[...node.transitions.values()].flat(), ...(node.always ?? [])];
    for (const t of all) count += Math.max(1, t.target?.length ?? 0);
  }
  return count;
}

/** Transitions drawn in a Mermaid diagram: one label line per arrow label, plus the listed targetless ones. */
function drawnTransitions(mermaid: string): number {
  let count = 0;
  for (const line of mermaid.split('\n').map((l) => l.trim())) {
    const arrow = /^(\S+) --> (\S+) : (.*)$/.exec(line);
    if (arrow && arrow[1] !== '[*]' && arrow[2] !== '[*]') count += (arrow[3] ?? '').split('<br/>').length;
    else if (/ \((internal|ignored)\)$/.test(line)) count++;
  }
  return count;
}

/** The guard name a referenced guard is shown with (null for inline guard functions). */
function guardName(guard: unknown): string | null {
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'object' && guard !== null && 'type' in guard && typeof guard.type === 'string') return guard.type;
  return null;
}

/** A small machine with every feature the generator draws; `busyName` names its compound state. */
function tinyMachine(busyName: string): AnyStateMachine {
  return setup({
    guards: { canGo: () => true, isDone: () => false },
    delays: { wait: 100 },
    actors: { worker: fromCallback(() => undefined) },
  }).createMachine({
    id: 'tiny',
    initial: 'idle',
    on: { reset: { actions: () => undefined } },
    states: {
      idle: { on: { go: { guard: 'canGo', target: busyName } } },
      [busyName]: {
        invoke: { src: 'worker' },
        initial: 'working',
        on: { cancel: '.checking', stop: 'idle' },
        states: {
          working: { after: { wait: 'checking' }, on: { ping: {} } },
          checking: { always: [{ guard: 'isDone', target: '#tiny.done' }, { target: 'working' }] },
        },
      },
      done: { type: 'final' },
    },
  });
}

/** Lines of `text`, trimmed. */
function linesOf(text: string): string[] {
  return text.split('\n').map((l) => l.trim());
}

/** Checks that every tag of `svg` is closed in order; returns the element names in document order. */
function checkTagBalance(svg: string): string[] {
  const stack: string[] = [];
  const names: string[] = [];
  for (const match of svg.matchAll(/<(\/?)([A-Za-z][\w:-]*)[^<>]*?(\/?)>/g)) {
    const [, closing, name = '', selfClosing] = match;
    if (closing) {
      assert.equal(stack.pop(), name, `</${name}> closes the element that is open`);
    } else {
      names.push(name);
      if (!selfClosing) stack.push(name);
    }
  }
  assert.deepEqual(stack, [], 'every element is closed');
  return names;
}

/** Contents of the bold `<text>` elements (the state names). */
function boldTexts(svg: string): string[] {
  return [...svg.matchAll(/<text [^>]*font-weight="bold"[^>]*>([^<]*)<\/text>/g)].map((m) => m[1] ?? '');
}

describe('statechart: Mermaid', () => {
  const mermaid = toMermaid(connectionMachine);

  it('is a stateDiagram-v2 naming every state of the connection machine', () => {
    assert.equal(mermaid.split('\n')[0], 'stateDiagram-v2');
    const states = statesOf(connectionMachine);
    assert.ok(states.length >= 8, 'the machine has its lifecycle states');
    for (const state of states) {
      assert.ok(mermaid.includes(`state "${state.key}" as `), `state ${state.key} is declared`);
    }
  });

  it('draws every transition of the machine, labelled with its event, guard and delay', () => {
    assert.equal(drawnTransitions(mermaid), transitionCount(connectionMachine));
    for (const node of nodesOf(connectionMachine)) {
      const delayed = new Set(node.after.map((t) => String(t.eventType)));
      for (const [eventType, list] of node.transitions) {
        if (!delayed.has(eventType)) assert.ok(mermaid.includes(eventType), `event ${eventType} of ${node.id}`);
        for (const t of list) {
          const guard = guardName(t.guard);
          if (guard !== null) assert.ok(mermaid.includes(`[${guard}]`), `guard ${guard} of ${node.id}`);
        }
      }
      for (const t of node.after) assert.ok(mermaid.includes(`after ${String(t.delay)}`), `delay ${String(t.delay)} of ${node.id}`);
      for (const t of node.always ?? []) {
        const guard = guardName(t.guard);
        if (guard !== null) assert.ok(mermaid.includes(`[${guard}]`), `eventless guard ${guard} of ${node.id}`);
      }
      for (const inv of node.invoke) {
        // Inline logic has no name of its own; a named src is shown by name.
        const src = typeof inv.src === 'string' && !inv.src.startsWith('xstate.invoke.') ? inv.src : '';
        assert.ok(mermaid.includes(`invokes ${src}`), `actor invoked by ${node.id}`);
      }
    }
  });

  it('writes initial arrows, final states, nesting, delays, eventless branches and invocations', () => {
    const text = toMermaid(tinyMachine('busy'));
    const lines = linesOf(text);
    for (const expected of [
      '[*] --> tiny',
      '[*] --> idle',
      'idle --> busy : go [canGo]',
      'busy --> idle : stop',
      'done --> [*]',
      'state "busy" as busy {',
      '[*] --> working',
      'working --> checking : after wait',
      'checking --> done : [isDone]',
      'checking --> working : [else]',
      'busy_any --> checking : cancel',
      'working : ping (ignored)',
      'invokes worker',
      'reset (internal)',
    ]) {
      assert.ok(lines.includes(expected), `has the line ${expected}\n${text}`);
    }
    // `working` is declared inside `busy`, after the arrows of the outer blocks that mention it.
    const busyBlock = text.slice(text.indexOf('state "busy" as busy {'));
    assert.ok(busyBlock.indexOf('state "working" as working') < busyBlock.indexOf('}'));
    assert.equal(drawnTransitions(text), transitionCount(tinyMachine('busy')));
  });

  it('changes when a state is renamed', () => {
    const before = toMermaid(tinyMachine('busy'));
    const renamed = toMermaid(tinyMachine('working_hard'));
    assert.notEqual(renamed, before);
    assert.ok(renamed.includes('state "working_hard" as working_hard {'));
    assert.ok(!renamed.includes('"busy"'));
  });

  it('is deterministic', () => {
    assert.equal(toMermaid(connectionMachine), mermaid);
  });
});

describe('statechart: SVG', () => {
  it('is a balanced standalone SVG with one bold text per state name', async () => {
    const svg = await toSvg(connectionMachine);
    assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" '));
    assert.ok(svg.endsWith('</svg>\n'));
    const names = checkTagBalance(svg);
    assert.equal(names[0], 'svg');
    assert.equal(names.filter((n) => n === 'svg').length, 1);
    // Nothing outside the file: no links, no external fonts or images; only local marker references.
    assert.ok(!/href|@import|@font-face|<image|<script/.test(svg));
    assert.deepEqual([...svg.matchAll(/url\(([^)]*)\)/g)].filter((m) => !(m[1] ?? '').startsWith('#')), []);
    const states = statesOf(connectionMachine);
    const bold = boldTexts(svg);
    for (const state of states) {
      assert.equal(bold.filter((t) => t === state.key).length, 1, `one name text for ${state.key}`);
    }
    // The root composite (the machine) is titled too.
    assert.equal(bold.length, states.length + 1);
  });

  it('changes when a state is renamed', async () => {
    const before = await toSvg(tinyMachine('busy'));
    const renamed = await toSvg(tinyMachine('working_hard'));
    assert.notEqual(renamed, before);
    assert.ok(boldTexts(renamed).includes('working_hard'));
    assert.ok(!boldTexts(renamed).includes('busy'));
    checkTagBalance(renamed);
  });

  it('is deterministic', async () => {
    const [first, second] = await Promise.all([toSvg(connectionMachine), toSvg(connectionMachine)]);
    assert.equal(first, second);
    assert.equal(await toSvg(connectionMachine), first);
  });
});

/** Exit code and output of `scripts/diagram.ts` run in a child process with `args`. */
function runCli(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/diagram.ts', ...args], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('statechart: scripts/diagram.ts', () => {
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });
  const tempRoot = async (): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), 'peerwarden-diagram-'));
    dirs.push(dir);
    await mkdir(join(dir, 'docs'));
    return dir;
  };

  it('--check fails on a stale README or SVG and writes nothing; a run makes both current', async () => {
    const dir = await tempRoot();
    const readmePath = join(dir, 'README.md');
    const svgPath = join(dir, 'docs', 'connection-machine.svg');
    await copyFile(join(repoRoot, 'README.md'), readmePath);
    const original = await readFile(readmePath, 'utf8');
    // A stale diagram: an older machine's block between the markers, and an old SVG.
    const start = original.indexOf('<!-- statechart:start -->');
    const end = original.indexOf('<!-- statechart:end -->');
    assert.ok(start !== -1 && end > start, 'README.md has the statechart markers');
    const stale = `${original.slice(0, start)}<!-- statechart:start -->\n\`\`\`mermaid\nstateDiagram-v2\n  [*] --> old\n\`\`\`\n${original.slice(end)}`;
    await writeFile(readmePath, stale);
    await writeFile(svgPath, '<svg xmlns="http://www.w3.org/2000/svg"></svg>\n');

    const failed = await runCli(['--check', '--root', dir]);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /out of date/);
    assert.match(failed.stderr, /README\.md/);
    assert.match(failed.stderr, /docs\/connection-machine\.svg/);
    assert.equal(await readFile(readmePath, 'utf8'), stale, '--check writes nothing');

    const wrote = await runCli(['--root', dir]);
    assert.equal(wrote.code, 0, wrote.stderr);
    const readme = await readFile(readmePath, 'utf8');
    assert.ok(readme.includes(`\`\`\`mermaid\n${toMermaid(connectionMachine)}\`\`\``));
    assert.equal(readme.slice(0, start), original.slice(0, start), 'text before the block is kept');
    assert.equal(readme.slice(readme.indexOf('<!-- statechart:end -->')), original.slice(end), 'text after it too');
    assert.equal(await readFile(svgPath, 'utf8'), await toSvg(connectionMachine));

    const passed = await runCli(['--check', '--root', dir]);
    assert.equal(passed.code, 0, passed.stderr);

    await writeFile(svgPath, `${await readFile(svgPath, 'utf8')}<!-- edited -->\n`);
    const svgOnly = await runCli(['--check', '--root', dir]);
    assert.equal(svgOnly.code, 1);
    assert.match(svgOnly.stderr, /docs\/connection-machine\.svg/);
    assert.doesNotMatch(svgOnly.stderr, /README\.md/);
  });

  it('adds the lifecycle section to a README without markers, and refuses malformed markers', async () => {
    const dir = await tempRoot();
    const readmePath = join(dir, 'README.md');
    await writeFile(readmePath, '# project\n\nIntro.\n');
    const wrote = await runCli(['--root', dir]);
    assert.equal(wrote.code, 0, wrote.stderr);
    const readme = await readFile(readmePath, 'utf8');
    assert.ok(readme.startsWith('# project\n\nIntro.\n\n## The connection lifecycle\n'));
    assert.ok(readme.includes('<!-- statechart:start -->') && readme.includes('<!-- statechart:end -->'));

    await writeFile(readmePath, '# project\n\n<!-- statechart:start -->\n');
    const malformed = await runCli(['--root', dir]);
    assert.equal(malformed.code, 2);
    assert.match(malformed.stderr, /statechart:end/);
    assert.equal(await readFile(readmePath, 'utf8'), '# project\n\n<!-- statechart:start -->\n');
  });
});
