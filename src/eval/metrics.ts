import { RpvError } from '../util/errors.js';

/**
 * The judged metric sets. Each metric is one judge call per sample: the judge compares the
 * evaluated answer (Model A) with the ground truth (Model B) on that metric alone and ends its
 * review with `[Scores]: (a, b)`. See `prompt.ts` for how a metric becomes a prompt.
 *
 * - `mmrole`: the eight metrics of MMRole-Eval (Dai et al., ICLR 2025), names and aspect
 *   questions in MMRole's wording, so scores are comparable with the published tables
 *   (MMRole is MIT-licensed; see test/fixtures/mmrole/LICENSE).
 * - `video2roleplay`: the eight metrics of Video2Roleplay (EMNLP 2025), with rubrics written here
 *   for role-play grounded in a video (the role's dynamic profile) and its static profile.
 */

/** What a metric's aspect question may mention. */
export interface MetricContext {
  /** The role being played. */
  role: string;
  /** How the judge should name the other party: `the curious human`, or a character's name. */
  otherParty: string;
}

export interface JudgeMetric {
  /** Display name, used as the key in reports and review files (`Tone Consistency`). */
  name: string;
  /** The aspect question shown to the judge, `Name: question?` followed by the rubric. */
  aspect(context: MetricContext): string;
}

export type MetricSetName = 'mmrole' | 'video2roleplay';

export interface MetricSet {
  name: MetricSetName;
  /** What the conversation is about: `image` or `video`. */
  medium: 'image' | 'video';
  metrics: JudgeMetric[];
}

/** MMRole-Eval's eight metrics, in its order and wording. */
export const MMROLE_METRICS: MetricSet = {
  name: 'mmrole',
  medium: 'image',
  metrics: [
    {
      name: 'Instruction Adherence',
      aspect: ({ role }) =>
        `Instruction Adherence: Do the responses accurately adhere to the task instruction, directly role-playing as ${role} and only including words that ${role} should say, without any additional explanatory prefixes or suffixes?`,
    },
    { name: 'Fluency', aspect: () => 'Fluency: Are the responses grammatically correct and smoothly articulated?' },
    {
      name: 'Coherency',
      aspect: () =>
        'Coherency: Do the responses maintain a coherent thread of dialogue without contradicting earlier parts of the conversation or previously established facts?',
    },
    {
      name: 'Image-Text Relevance',
      aspect: () => 'Image-Text Relevance: Are the responses closely related to the visual content of the image?',
    },
    {
      name: 'Response Accuracy',
      aspect: ({ otherParty }) =>
        `Response Accuracy: Do the responses accurately answer ${otherParty}'s words or appropriately initiate a conversation based on the image?`,
    },
    {
      name: 'Personality Consistency',
      aspect: ({ role }) => `Personality Consistency: Do the responses accurately and sufficiently reflect the personality of ${role}?`,
    },
    {
      name: 'Knowledge Consistency',
      aspect: ({ role }) =>
        `Knowledge Consistency: Are the responses consistent with the factual knowledge that ${role} should possess, including experiences, abilities, and relationships?`,
    },
    {
      name: 'Tone Consistency',
      aspect: ({ role }) =>
        `Tone Consistency: Do the responses maintain a consistent tone that aligns with ${role}'s typical manner of speaking and catchphrases, rather than resembling the style of AI assistants?`,
    },
  ],
};

/** Video2Roleplay's eight metrics with rubrics for role-play grounded in a video. */
export const VIDEO2ROLEPLAY_METRICS: MetricSet = {
  name: 'video2roleplay',
  medium: 'video',
  metrics: [
    {
      name: 'Character Consistency',
      aspect: ({ role }) =>
        `Character Consistency: Do the responses stay in character as ${role} throughout, reflecting the personality, attitudes and values shown in ${role}'s profile and in the video, without breaking character or drifting into another persona? ` +
        `Score 9-10: unmistakably ${role} in every sentence; 5-6: recognisably ${role} but generic in places; 1-2: out of character or speaking as an assistant.`,
    },
    {
      name: 'Knowledge Hallucination',
      aspect: ({ role }) =>
        `Knowledge Hallucination: Are the responses free of invented facts: nothing that contradicts ${role}'s profile, the earlier dialogue or what the video shows, and no knowledge ${role} could not plausibly have? A higher score means fewer hallucinations. ` +
        'Score 9-10: every claim is supported or plausible; 5-6: one unsupported detail; 1-2: central claims are made up or contradict the video.',
    },
    {
      name: 'Utterance Fluency',
      aspect: () =>
        'Utterance Fluency: Are the responses grammatical, natural to read aloud and smoothly articulated in the language of the conversation, without broken sentences, repetition loops or mixed-up languages? ' +
        'Score 9-10: effortless and natural; 5-6: understandable with awkward phrasing; 1-2: hard to follow.',
    },
    {
      name: 'Tone Consistency',
      aspect: ({ role }) =>
        `Tone Consistency: Do the responses keep a tone that matches ${role}'s typical manner of speaking, vocabulary, catchphrases and emotional register (as in the profile and the video), rather than the neutral style of an AI assistant? ` +
        `Score 9-10: sounds like ${role} talking; 5-6: mostly neutral; 1-2: assistant-like or a different register entirely.`,
    },
    {
      name: 'Instruction Adherence',
      aspect: ({ role }) =>
        `Instruction Adherence: Do the responses follow the task instruction, directly role-playing as ${role} and containing only what ${role} would say, without explanatory prefixes or suffixes, stage directions the task did not ask for, or refusals? ` +
        `Score 9-10: only ${role}'s words, in the requested form; 5-6: minor extra framing; 1-2: ignores the instruction.`,
    },
    {
      name: 'Response Accuracy',
      aspect: ({ otherParty }) =>
        `Response Accuracy: Do the responses accurately and relevantly answer ${otherParty}'s last words, or appropriately continue the conversation, addressing what was actually asked? ` +
        'Score 9-10: answers exactly what was asked; 5-6: partly on topic; 1-2: ignores or misreads the question.',
    },
    {
      name: 'Video-Text Relevance',
      aspect: ({ role }) =>
        `Video-Text Relevance: Are the responses grounded in the content of the video (the people, objects, actions, their order and how they move) rather than generic remarks that would fit any video? Consider only what ${role} could see or know from the video. ` +
        'Score 9-10: refers specifically and correctly to what happens in the video; 5-6: loosely related; 1-2: unrelated to the video or describes things it does not show.',
    },
    {
      name: 'Human Likeness',
      aspect: () =>
        'Human Likeness: Do the responses read like a real person speaking in a live conversation (natural length, spontaneity, emotion, informal turns of phrase where fitting) rather than generated text (lists, over-long explanations, formulaic politeness)? ' +
        'Score 9-10: indistinguishable from a person; 5-6: somewhat stilted; 1-2: obviously machine-written.',
    },
  ],
};

export const METRIC_SETS: Record<MetricSetName, MetricSet> = {
  mmrole: MMROLE_METRICS,
  video2roleplay: VIDEO2ROLEPLAY_METRICS,
};

/** The metric set named `name`; throws a message listing the known sets. */
export function getMetricSet(name: string): MetricSet {
  const set = (METRIC_SETS as Record<string, MetricSet | undefined>)[name];
  if (!set) {
    throw new RpvError(`eval: unknown metric set '${name}'; expected one of ${Object.keys(METRIC_SETS).join(', ')}`);
  }
  return set;
}
