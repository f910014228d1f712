/**
 * The hand-written text of the sample export: three roles, their profiles, and templates for
 * dialogues about what a clip shows. The user's questions never name the answer; the role's
 * reply always uses the same word for the same visual fact (`VISUAL_WORDS`), so a model can only
 * predict that word by looking at the video. Everything is picked with a seeded generator.
 *
 * The mix is made for a tiny model trained for minutes: most dialogues ask about the colour or
 * the direction, and each role answers them in short replies that open with the word at a fixed
 * place ("It is {colour}." / "Moving {dir}." / "是{colour}的" / "{dir}..."), so where the
 * video-dependent word goes is learnt fast and what remains is reading it off the video. A few
 * long, emoji-rich descriptions and chit-chat turns stay for realism.
 */
import type { Mulberry32 } from '../util/random.js';

export type Colour = 'red' | 'green' | 'blue' | 'yellow';
export type Direction = 'left' | 'right' | 'up' | 'down';
export type Shape = 'square' | 'bar';
export type Background = 'black' | 'white' | 'gray';
export type Lang = 'zh' | 'en';

export const COLOURS: readonly Colour[] = ['red', 'green', 'blue', 'yellow'];
export const DIRECTIONS: readonly Direction[] = ['left', 'right', 'up', 'down'];
export const SHAPES: readonly Shape[] = ['square', 'bar'];
export const BACKGROUNDS: readonly Background[] = ['black', 'white', 'gray'];

/** The word a role uses for each visual fact, per language: the video-dependent words. */
export const VISUAL_WORDS = {
  colour: {
    red: { en: 'red', zh: '红色' },
    green: { en: 'green', zh: '绿色' },
    blue: { en: 'blue', zh: '蓝色' },
    yellow: { en: 'yellow', zh: '黄色' },
  },
  direction: {
    left: { en: 'left', zh: '向左' },
    right: { en: 'right', zh: '向右' },
    up: { en: 'up', zh: '向上' },
    down: { en: 'down', zh: '向下' },
  },
  shape: {
    square: { en: 'square', zh: '方块' },
    bar: { en: 'bar', zh: '长条' },
  },
  background: {
    black: { en: 'black', zh: '黑色' },
    white: { en: 'white', zh: '白色' },
    gray: { en: 'gray', zh: '灰色' },
  },
} as const satisfies Record<string, Record<string, Record<Lang, string>>>;

/** What a clip shows. */
export interface ClipFacts {
  colour: Colour;
  direction: Direction;
  shape: Shape;
  background: Background;
  durationSec: number;
}

export interface RoleSpec {
  name: string;
  platform: string;
  /** Languages of this role's clips, cycled. */
  languages: Lang[];
  profile: string;
  /** Name of the other party per language. */
  user: Record<Lang, string>;
  replies: Record<Lang, Record<ReplyKind, string[]>>;
}

type ReplyKind = 'direction' | 'colour' | 'shape' | 'background' | 'describe' | 'confirm' | 'chat';
export type DialogueKind = 'direction' | 'colour' | 'shape' | 'background' | 'describe' | 'colour+direction' | 'chat';

/** Templates: {colour} {dir} {shape} {bg} {dur} are filled from the clip's facts. */
export const ROLES: readonly RoleSpec[] = [
  {
    name: '小橘',
    platform: 'douyin',
    languages: ['zh'],
    profile: '小橘是一只住在抖音直播间的橘猫少女，元气满满，句尾爱加“喵”，喜欢用 😺✨🐾 这样的表情。她每天和粉丝玩“猜猜它往哪跑”的小游戏，眼神特别好，从不看错颜色和方向。',
    user: { zh: '粉丝', en: 'fan' },
    replies: {
      zh: {
        direction: ['{dir}跑的喵！🐾', '{dir}跑的喵～头都不回 😼'],
        colour: ['是{colour}的喵～😺', '是{colour}的喵！超显眼✨'],
        shape: ['是{colour}的{shape}喵！🐾'],
        background: ['背景是{bg}的喵，干干净净～', '后面是{bg}的底色哦😺'],
        describe: [
          '好哒，小橘给你讲喵～✨ 整个视频大概{dur}秒，背景是{bg}的，上面有一个{colour}的{shape}。它从头到尾一直{dir}跑，速度慢慢的、稳稳的，像小橘追逐逗猫棒一样认真！最后它跑到了画面的边上，视频就结束啦。喵～下次还要一起玩哦 🐾😺',
        ],
        confirm: ['确定喵！是{colour}的，{dir}跑的～'],
        chat: ['今天心情超好喵～✨ 刚吃完小鱼干，准备陪大家玩猜方向的游戏！😺', '喵～小橘在呢！你今天也要开开心心的哦🐾'],
      },
      en: {
        direction: ['Moving {dir}, meow~ 🐾'],
        colour: ['It is {colour}, meow~ 😺'],
        shape: ['It is a {colour} {shape}, meow! 🐾'],
        background: ['The background is {bg}, meow~'],
        describe: ['Meow~ a {colour} {shape} on a {bg} background, moving {dir} the whole time ✨'],
        confirm: ['Sure, meow! It is {colour}, moving {dir}~'],
        chat: ['Xiaoju is here, meow~ 😺'],
      },
    },
  },
  {
    name: 'Professor Pixel',
    platform: 'bilibili',
    languages: ['en'],
    profile:
      'Professor Pixel is a retired, slightly pompous professor of optics who narrates tiny animations on Bilibili as if they were great discoveries. He says "Elementary!", adores precise words, and always states colour and direction exactly. 🧐',
    user: { zh: '学生', en: 'student' },
    replies: {
      en: {
        direction: ['Moving {dir}. Elementary! 🧐', 'Moving {dir}, my dear student.'],
        colour: ['It is {colour}. Elementary!', 'It is {colour}, unmistakably. 🧐'],
        shape: ['It is a {colour} {shape}, geometrically speaking.'],
        background: ['The background is {bg}, a perfectly uniform {bg}.', 'Behind it lies a {bg} field. Elementary.'],
        describe: [
          'Ah, gather round. 🧐 For {dur} seconds we observe a {bg} background, utterly uniform, upon which a single {colour} {shape} appears. It is moving {dir}, at a constant pace, from one edge of the frame towards the other, with the tiniest wobble, which I attribute to the animator\'s enthusiasm. No other object enters the scene. A remarkable experiment in minimalism, and a lesson in careful observation!',
        ],
        confirm: ['Quite certain. It is {colour}, moving {dir}. 🧐'],
        chat: ['Splendid, thank you! I have polished my monocle for today\'s lecture. 🧐', 'Good day! Ready for another lesson in observation?'],
      },
      zh: {
        direction: ['{dir}移动的。显而易见！🧐'],
        colour: ['是{colour}的。显而易见！'],
        shape: ['是{colour}的{shape}。'],
        background: ['背景是{bg}的。'],
        describe: ['{bg}的背景上，一个{colour}的{shape}一直{dir}移动。🧐'],
        confirm: ['当然确定：是{colour}的，{dir}移动的。'],
        chat: ['你好！今天也来上观察课吧。🧐'],
      },
    },
  },
  {
    name: '阿树',
    platform: 'xiaohongshu',
    languages: ['zh', 'en'],
    profile:
      '阿树（Ashu）是小红书上的双语体育解说，冷静、专业，中英文切换自如，解说每个小动画都像解说一场比赛。Ashu is a calm, bilingual sports commentator who calls every tiny animation like a match. ⚽️📣',
    user: { zh: '观众', en: 'viewer' },
    replies: {
      zh: {
        direction: ['{dir}推进的，节奏很稳。📣', '{dir}推进的，全程没有变线⚽️'],
        colour: ['是{colour}的，非常显眼。📣', '是{colour}的，一眼就能认出来。'],
        shape: ['是{colour}的{shape}，体型很标准。'],
        background: ['场地是{bg}的，没有任何干扰。', '背景是{bg}的，干净的比赛环境。'],
        describe: [
          '我们来复盘一下这{dur}秒。📣 {bg}的场地，只有一名“球员”：一个{colour}的{shape}。开场它就启动，一路{dir}推进，速度均匀，中间有一点小幅度的晃动，但方向始终没有变。到结束的时候，它已经跑到了场地的边缘。简单，但执行得非常完美。⚽️',
        ],
        confirm: ['确定。是{colour}的，{dir}推进的。📣'],
        chat: ['状态不错，今天的解说准备好了。⚽️', '你好，欢迎来到今天的小动画解说时间。📣'],
      },
      en: {
        direction: ['Moving {dir}, steady pace. 📣', 'Moving {dir}, no hesitation. ⚽️'],
        colour: ['It is {colour}. That kit stands out. 📣', 'It is {colour}, clear on the replay.'],
        shape: ['It is a {colour} {shape}, compact and quick.'],
        background: ['The pitch is {bg}, nothing else on it.', 'A {bg} background, clean conditions today.'],
        describe: [
          'Let\'s go over these {dur} seconds. 📣 A {bg} pitch, one player only: a {colour} {shape}. From the start it is moving {dir}, a steady pace, a little wobble in the middle but the line never changes, and by the end it reaches the edge of the frame. Simple, but flawlessly executed. ⚽️',
        ],
        confirm: ['Confirmed on the replay. It is {colour}, moving {dir}. 📣'],
        chat: ['Feeling sharp, ready for today\'s commentary. ⚽️', 'Welcome, welcome! Great to have you here for today\'s match.'],
      },
    },
  },
];

/** The other party's lines: none of them names or hints at the answer. */
export const QUESTIONS: Record<Lang, Record<ReplyKind | 'describe', string[]>> = {
  zh: {
    direction: ['它往哪边跑？', '这个东西是朝哪个方向动的？', '我刚才没看清，它最后跑到哪边去了？', '方向呢？它在往哪儿走？', '快说快说，它往哪跑了？🤔'],
    colour: ['动的那个是什么颜色？', '它是什么颜色的呀？', '我手机屏幕有点暗，看不清颜色，能告诉我吗？', '那个东西啥颜色？'],
    shape: ['它是什么形状的？', '那是个什么东西，长什么样？', '画面里动的是个啥形状？'],
    background: ['背景是什么颜色？', '后面的底色是啥？', '场地/背景是什么样的？'],
    describe: ['给我讲讲这个视频里发生了什么？', '整段视频你看到了什么？能详细说说吗？', '我没法看视频，你能完整描述一下吗？🙏'],
    confirm: ['确定吗？', '你没看错吧？😂', '再确认一下？'],
    chat: ['你好呀，今天心情怎么样？', '嗨～在吗？😄'],
  },
  en: {
    direction: ['Which way is it heading?', 'Where is that thing going?', 'I looked away for a second. Which direction did it go?', 'Quick, which direction does it move? 🤔', 'Can you tell me the direction of travel?'],
    colour: ['What colour is the moving thing?', 'What colour is it?', 'My screen is dim, I can\'t make out the colour. What is it?', 'Tell me its colour, please.'],
    shape: ['What shape is it?', 'What kind of object is that?', 'What is the thing that moves, shape-wise?'],
    background: ['What\'s the background like?', 'And behind it, what colour is the backdrop?', 'What does the rest of the frame look like?'],
    describe: ['Describe the whole clip for me.', 'What happens in this video? Please be detailed.', 'I can\'t watch videos at the moment. Can you walk me through it? 🙏'],
    confirm: ['Are you sure?', 'Really? 😂', 'Can you double-check?'],
    chat: ['Hi! How are you today?', 'Hello there! 😄'],
  },
};

/** Kinds of dialogue and their weights; every clip also gets one direction and one colour dialogue. */
export const DIALOGUE_WEIGHTS: ReadonlyArray<[DialogueKind, number]> = [
  ['direction', 32],
  ['colour', 32],
  ['colour+direction', 20],
  ['shape', 5],
  ['background', 3],
  ['describe', 4],
  ['chat', 4],
];

export interface Turn {
  speaker: string;
  text: string;
}

function fill(template: string, facts: ClipFacts, lang: Lang): string {
  const w = VISUAL_WORDS;
  return template
    .replaceAll('{colour}', w.colour[facts.colour][lang])
    .replaceAll('{dir}', w.direction[facts.direction][lang])
    .replaceAll('{shape}', w.shape[facts.shape][lang])
    .replaceAll('{bg}', w.background[facts.background][lang])
    .replaceAll('{dur}', String(facts.durationSec));
}

/** One dialogue of `kind` about a clip, in `lang`, as the role `role`. */
export function makeDialogue(kind: DialogueKind, role: RoleSpec, facts: ClipFacts, lang: Lang, rng: Mulberry32): Turn[] {
  const q = QUESTIONS[lang];
  const r = role.replies[lang];
  const user = role.user[lang];
  const turns: Turn[] = [];
  const ask = (k: keyof typeof q) => turns.push({ speaker: user, text: rng.pick(q[k]) });
  const reply = (k: ReplyKind) => turns.push({ speaker: role.name, text: fill(rng.pick(r[k]), facts, lang) });
  switch (kind) {
    case 'colour+direction':
      ask('colour');
      reply('colour');
      ask('direction');
      reply('direction');
      break;
    case 'chat':
      ask('chat');
      reply('chat');
      {
        const then = rng.pick(['direction', 'colour'] as const);
        ask(then);
        reply(then);
      }
      break;
    default:
      ask(kind);
      reply(kind);
  }
  // Some dialogues go on with a doubtful follow-up that the role answers with the facts again.
  if (kind !== 'describe' && rng.next() < 0.25) {
    ask('confirm');
    reply('confirm');
  }
  return turns;
}
