// Shell completion for bash, zsh and fish, generated from the commander
// program itself (program.ts's buildProgram): every command, option and
// argument the CLI parses, and nothing it does not. `ferry completion SHELL`
// prints a script; the man page (man.ts) reads the same description.
//
// Owns: the walk over commander's definition (describeProgram) and the three
// scripts. Must never: run a command, read a site, or complete anything the
// parser would refuse (a test drives the bash script and compares with the
// program's own tree).
import type { Argument, Command, Option } from 'commander';

/** What an option's or an argument's value is, for completion: a file, a directory, one of a list, or free text. */
export type ValueKind = 'file' | 'dir' | 'text' | { choices: readonly string[] };

export interface CliOption {
  /** --name (every ferry option has a long form) */
  long: string;
  short?: string;
  value: 'none' | 'required' | 'optional';
  /** the value's name in the usage: <dir> gives "dir" */
  valueName?: string;
  description: string;
  defaultValue?: unknown;
  kind: ValueKind;
}

export interface CliArgument {
  name: string;
  required: boolean;
  variadic: boolean;
  description: string;
  kind: ValueKind;
}

export interface CliCommand {
  /** the words after `ferry` that name it ([] for the program) */
  path: string[];
  description: string;
  options: CliOption[];
  args: CliArgument[];
  commands: CliCommand[];
}

// Values that are paths: completed as files or directories (the rest is free text).
const DIR_OPTIONS = new Set(['--home', '--target']);
const FILE_OPTIONS = new Set(['--config', '--log-file', '--output', '--member']);
const DIR_ARGS = new Set(['path']);
const FILE_ARGS = new Set(['file']);

const HELP_OPTION: CliOption = { long: '--help', short: '-h', value: 'none', description: 'display help for command', kind: 'text' };

function optionOf(o: Option): CliOption | undefined {
  if (o.hidden || !o.long) return undefined;
  const valueName = /[<[]([^>\]]+)[>\]]/.exec(o.flags)?.[1]?.replace(/\.\.\.$/, '');
  const kind: ValueKind = o.argChoices ? { choices: o.argChoices } : DIR_OPTIONS.has(o.long) ? 'dir' : FILE_OPTIONS.has(o.long) ? 'file' : 'text';
  return {
    long: o.long,
    ...(o.short ? { short: o.short } : {}),
    value: o.required ? 'required' : o.optional ? 'optional' : 'none',
    ...(valueName ? { valueName } : {}),
    description: o.description,
    ...(o.defaultValue !== undefined && typeof o.defaultValue !== 'boolean' && !(Array.isArray(o.defaultValue) && o.defaultValue.length === 0) ? { defaultValue: o.defaultValue } : {}),
    kind: o.required || o.optional ? kind : 'text',
  };
}

function argumentOf(a: Argument): CliArgument {
  const name = a.name();
  return {
    name,
    required: a.required,
    variadic: a.variadic,
    description: a.description,
    kind: a.argChoices ? { choices: a.argChoices } : DIR_ARGS.has(name) ? 'dir' : FILE_ARGS.has(name) ? 'file' : 'text',
  };
}

/** The program as data: what completion and the man page are made from. */
export function describeProgram(program: Command, path: string[] = []): CliCommand {
  const options = program.options.map(optionOf).filter((o): o is CliOption => o !== undefined);
  if (!options.some((o) => o.long === '--help')) options.push(HELP_OPTION);
  return {
    path,
    description: program.description(),
    options,
    args: program.registeredArguments.map(argumentOf),
    commands: program.commands.filter((c) => !(c as Command & { _hidden?: boolean })._hidden).map((c) => describeProgram(c, [...path, c.name()])),
  };
}

/** Every command, the program first, parents before their subcommands. */
export function allCommands(c: CliCommand): CliCommand[] {
  return [c, ...c.commands.flatMap(allCommands)];
}

/** The usage line of a command: ferry mirror update [options] <volume> */
export function usageOf(c: CliCommand): string {
  const args = c.args.map((a) => (a.required ? `<${a.name}${a.variadic ? '...' : ''}>` : `[${a.name}${a.variadic ? '...' : ''}]`));
  return ['ferry', ...c.path, ...(c.options.length ? ['[options]'] : []), ...(c.commands.length ? ['<command>'] : []), ...args].join(' ');
}

// ---------------------------------------------------------------- shells

/** One word safe inside single quotes in sh, bash, zsh and fish. */
function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** fish quotes differently: \' inside single quotes. */
function fq(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

function oneLine(s: string, max = 200): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

function kindWord(k: ValueKind): string {
  return typeof k === 'string' ? k : `choices:${k.choices.join(' ')}`;
}

function optionWords(c: CliCommand): string[] {
  return c.options.flatMap((o) => (o.short ? [o.long, o.short] : [o.long]));
}

function valued(c: CliCommand): CliOption[] {
  return c.options.filter((o) => o.value !== 'none');
}

/** `case` arms keyed by the command path ("ferry mirror update"), shared by bash and zsh. */
function caseArms(commands: CliCommand[], body: (c: CliCommand) => string | undefined): string {
  return commands
    .map((c) => {
      const b = body(c);
      return b === undefined ? undefined : `    ${sq(['ferry', ...c.path].join(' '))}) ${b} ;;`;
    })
    .filter((x) => x !== undefined)
    .join('\n');
}

function header(shell: string, version: string, install: string[]): string {
  return [`# ${shell} completion for ferry ${version}, generated by \`ferry completion ${shell}\` from its command line.`, ...install.map((l) => `# ${l}`)].join('\n');
}

export function bashCompletion(root: CliCommand, version: string): string {
  const all = allCommands(root);
  return `${header('bash', version, ['Install: ferry completion bash > /etc/bash_completion.d/ferry (or /usr/share/bash-completion/completions/ferry),', 'or for one shell: source <(ferry completion bash)'])}

# The subcommands, options, options that take a value, and value kinds of each command path.
_ferry_commands() {
  case "$1" in
${caseArms(all, (c) => (c.commands.length ? `_ferry_r=${sq(c.commands.map((s) => s.path.at(-1)!).join(' '))}` : undefined))}
    *) _ferry_r='' ;;
  esac
}
_ferry_options() {
  case "$1" in
${caseArms(all, (c) => `_ferry_r=${sq(optionWords(c).join(' '))}`)}
    *) _ferry_r='' ;;
  esac
}
_ferry_valued() {
  case "$1" in
${caseArms(all, (c) => (valued(c).length ? `_ferry_r=${sq(valued(c).flatMap((o) => (o.short ? [o.long, o.short] : [o.long])).join(' '))}` : undefined))}
    *) _ferry_r='' ;;
  esac
}
_ferry_value_kind() {
  case "$1|$2" in
${all.flatMap((c) => valued(c).flatMap((o) => [o.long, ...(o.short ? [o.short] : [])].map((w) => `    ${sq(`${['ferry', ...c.path].join(' ')}|${w}`)}) _ferry_r=${sq(kindWord(o.kind))} ;;`))).join('\n')}
    *) _ferry_r='text' ;;
  esac
}
_ferry_arg_kind() {
  case "$1" in
${caseArms(all, (c) => (c.args.length ? `_ferry_r=${sq(kindWord(c.args[0].kind))}` : undefined))}
    *) _ferry_r='text' ;;
  esac
}

_ferry_complete_kind() {
  local cur="$2" IFS=$'\n'
  case "$1" in
    file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
    dir) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")) ;;
    choices:*) IFS=$' \t\n'; COMPREPLY=($(compgen -W "\${1#choices:}" -- "$cur")) ;;
    *) COMPREPLY=() ;;
  esac
}

_ferry() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="" fp="ferry" w i skip="" helping=""
  local IFS=$' \\t\\n'
  COMPREPLY=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    if [[ -n $skip ]]; then skip=""; continue; fi
    case "$w" in
      --*=*) continue ;;
      -*) _ferry_valued "$fp"; [[ " $_ferry_r " == *" $w "* ]] && skip=1; continue ;;
    esac
    if [[ $fp == ferry && $w == help && -z $helping ]]; then helping=1; continue; fi
    _ferry_commands "$fp"
    [[ " $_ferry_r " == *" $w "* ]] && fp="$fp $w"
  done
  if [[ -n $skip ]]; then
    _ferry_value_kind "$fp" "\${COMP_WORDS[COMP_CWORD-1]}"
    _ferry_complete_kind "$_ferry_r" "$cur"
    return 0
  fi
  if [[ $cur == -* ]]; then
    if [[ -n $helping ]]; then _ferry_options 'ferry help'; else _ferry_options "$fp"; fi
    COMPREPLY=($(compgen -W "$_ferry_r" -- "$cur"))
    return 0
  fi
  _ferry_commands "$fp"
  if [[ -n $_ferry_r ]]; then COMPREPLY=($(compgen -W "$_ferry_r" -- "$cur")); return 0; fi
  [[ -n $helping ]] && return 0
  _ferry_arg_kind "$fp"
  _ferry_complete_kind "$_ferry_r" "$cur"
  return 0
}
complete -F _ferry ferry
`;
}

export function zshCompletion(root: CliCommand, version: string): string {
  const all = allCommands(root);
  const described = (name: string, d: string) => sq(`${name.replace(/:/g, '\\:')}:${oneLine(d)}`);
  return `#compdef ferry
${header('zsh', version, ['Install: ferry completion zsh > "${fpath[1]}/_ferry", then start a new shell;', 'or for one shell (after compinit): source <(ferry completion zsh)'])}

_ferry_commands() {
  case "$1" in
${caseArms(all, (c) => (c.commands.length ? `reply=(${c.commands.map((s) => described(s.path.at(-1)!, s.description)).join(' ')})` : undefined))}
    *) reply=() ;;
  esac
}
_ferry_options() {
  case "$1" in
${caseArms(all, (c) => `reply=(${c.options.flatMap((o) => [o.long, ...(o.short ? [o.short] : [])].map((w) => described(w, o.description))).join(' ')})`)}
    *) reply=() ;;
  esac
}
_ferry_valued() {
  case "$1" in
${caseArms(all, (c) => (valued(c).length ? `reply=(${valued(c).flatMap((o) => [o.long, ...(o.short ? [o.short] : [])]).join(' ')})` : undefined))}
    *) reply=() ;;
  esac
}
_ferry_value_kind() {
  case "$1|$2" in
${all.flatMap((c) => valued(c).flatMap((o) => [o.long, ...(o.short ? [o.short] : [])].map((w) => `    ${sq(`${['ferry', ...c.path].join(' ')}|${w}`)}) REPLY=${sq(kindWord(o.kind))} ;;`))).join('\n')}
    *) REPLY=text ;;
  esac
}
_ferry_arg_kind() {
  case "$1" in
${caseArms(all, (c) => (c.args.length ? `REPLY=${sq(kindWord(c.args[0].kind))}` : undefined))}
    *) REPLY=text ;;
  esac
}

_ferry_complete_kind() {
  case "$1" in
    file) _files ;;
    dir) _files -/ ;;
    choices:*) compadd -- \${=\${1#choices:}} ;;
    *) _message 'value' ;;
  esac
}

_ferry() {
  local fp=ferry w i skip= helping= REPLY
  local -a reply names
  for (( i = 2; i < CURRENT; i++ )); do
    w=\${words[i]}
    if [[ -n $skip ]]; then skip=; continue; fi
    [[ $w == --*=* ]] && continue
    if [[ $w == -* ]]; then
      _ferry_valued "$fp"
      (( \${reply[(Ie)$w]} )) && skip=1
      continue
    fi
    if [[ $fp == ferry && $w == help && -z $helping ]]; then helping=1; continue; fi
    _ferry_commands "$fp"
    names=(\${reply%%:*})
    (( \${names[(Ie)$w]} )) && fp="$fp $w"
  done
  local cur=\${words[CURRENT]}
  if [[ -n $skip ]]; then
    _ferry_value_kind "$fp" "\${words[CURRENT-1]}"
    _ferry_complete_kind "$REPLY"
    return
  fi
  if [[ $cur == -* ]]; then
    if [[ -n $helping ]]; then _ferry_options 'ferry help'; else _ferry_options "$fp"; fi
    _describe -t options option reply
    return
  fi
  _ferry_commands "$fp"
  if (( $#reply )); then _describe -t commands command reply; return; fi
  [[ -n $helping ]] && return
  _ferry_arg_kind "$fp"
  _ferry_complete_kind "$REPLY"
}

if [[ \${zsh_eval_context[-1]} == loadautofunc ]]; then
  _ferry "$@"
else
  compdef _ferry ferry
fi
`;
}

export function fishCompletion(root: CliCommand, version: string): string {
  const all = allCommands(root);
  const lines: string[] = [];
  const at = (c: CliCommand) => `__ferry_at ${fq(['ferry', ...c.path].join(' '))}`;
  for (const c of all) {
    for (const s of c.commands) lines.push(`complete -c ferry -n ${fq(at(c))} -a ${fq(s.path.at(-1)!)} -d ${fq(oneLine(s.description, 100))}`);
    for (const o of c.options) {
      const flags = [`-l ${fq(o.long.slice(2))}`, ...(o.short ? [`-s ${fq(o.short.slice(1))}`] : [])].join(' ');
      let value = '';
      if (o.value !== 'none') {
        const k = o.kind;
        value = k === 'file' ? ' -r -F' : k === 'dir' ? ` -r -f -a ${fq('(__fish_complete_directories)')}` : typeof k === 'object' ? ` -r -f -a ${fq(k.choices.join(' '))}` : ' -r -f';
      }
      lines.push(`complete -c ferry -n ${fq(at(c))} ${flags}${value} -d ${fq(oneLine(o.description, 100))}`);
    }
    if (c.args.length && !c.commands.length) {
      const k = c.args[0].kind;
      if (k === 'file') lines.push(`complete -c ferry -n ${fq(at(c))} -F`);
      else if (k === 'dir') lines.push(`complete -c ferry -n ${fq(at(c))} -a ${fq('(__fish_complete_directories)')}`);
      else if (typeof k === 'object') lines.push(`complete -c ferry -n ${fq(at(c))} -a ${fq(k.choices.join(' '))}`);
    }
  }
  const subs = all.filter((c) => c.commands.length);
  const vals = all.filter((c) => valued(c).length);
  return `${header('fish', version, ['Install: ferry completion fish > ~/.config/fish/completions/ferry.fish', '(or /usr/share/fish/vendor_completions.d/ferry.fish for every user)'])}

function __ferry_subcommands
    switch $argv[1]
${subs.map((c) => `        case ${fq(['ferry', ...c.path].join(' '))}\n            echo ${c.commands.map((s) => fq(s.path.at(-1)!)).join(' ')}`).join('\n')}
    end
end

function __ferry_valued
    switch $argv[1]
${vals.map((c) => `        case ${fq(['ferry', ...c.path].join(' '))}\n            echo ${valued(c).flatMap((o) => [o.long, ...(o.short ? [o.short] : [])]).map(fq).join(' ')}`).join('\n')}
    end
end

# The command path the words before the cursor name ("ferry mirror update"), skipping options and their values.
function __ferry_path
    set -l words (commandline -opc)
    set -e words[1]
    set -l p ferry
    set -l skip 0
    for w in $words
        if test $skip = 1
            set skip 0
            continue
        end
        switch $w
            case '--*=*'
                continue
            case '-*'
                if contains -- $w (string split ' ' -- (__ferry_valued "$p"))
                    set skip 1
                end
                continue
        end
        if test "$p" = ferry -a "$w" = help
            continue
        end
        if contains -- $w (string split ' ' -- (__ferry_subcommands "$p"))
            set p "$p $w"
        end
    end
    echo $p
end

function __ferry_at
    set -l p (__ferry_path)
    test "$p" = "$argv[1]"
end

complete -c ferry -f
${lines.join('\n')}
`;
}

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

export function completionScript(shell: Shell, root: CliCommand, version: string): string {
  return shell === 'bash' ? bashCompletion(root, version) : shell === 'zsh' ? zshCompletion(root, version) : fishCompletion(root, version);
}
