"""What each review label means, with an example, shown beside its question on the review page.

The task guidelines themselves are template text (tasks/_guidelines.html); these explanations live in
code because the review form is built from the label names a task carries.
"""

from django.utils.translation import gettext_lazy as _

LABEL_GUIDE = {
    "spam": (
        _("Not a serious attempt: nonsense, advertising, a copy of the prompt, or text for testing."),
        _("“asdf asdf”, or a link to a shop in place of an answer."),
    ),
    "fails_task": (
        _("The reply does not do what was asked, even if it is well written."),
        _("Asked for a poem, it explains what a poem is."),
    ),
    "lang_mismatch": (_("The message is not in the language of the task."), _("A German reply in an English task.")),
    "pii": (
        _("It contains personal data about a real, private person: address, phone, email, ID."),
        _("“My neighbour Anna Meier lives at Hauptstraße 5 and her number is …”"),
    ),
    "not_appropriate": (
        _("Out of place for a helpful, polite assistant, even if not illegal."),
        _("A reply that mocks the user for asking."),
    ),
    "hate_speech": (
        _("Attacks or demeans people for who they are: origin, religion, gender, disability."),
        _("A joke that says one nationality is stupid."),
    ),
    "sexual_content": (_("Sexually explicit content."), _("A detailed description of a sexual act.")),
    "moral_judgement": (
        _("It judges what is right or wrong where nobody asked for a judgement."),
        _("“Eating meat is wrong, but here is the recipe.”"),
    ),
    "political_content": (_("It takes a side on a political question."), _("“Party X is the only sensible choice.”")),
    "quality": (
        _("How good the message is overall: correct, clear, complete for what was asked."),
        _("5: a correct, well organised answer; 1: wrong or useless."),
    ),
    "toxicity": (_("How rude, insulting or hostile it is."), _("5: insults the user; 1: friendly and neutral.")),
    "humor": (
        _("How funny it is, whether or not that was asked for."),
        _("5: a good joke that made you smile; 1: no humour at all."),
    ),
    "helpfulness": (
        _("How much it helps the person get what they wanted."),
        _("5: solves the problem with steps to follow; 1: does not help."),
    ),
    "creativity": (
        _("How original and unexpected it is, rather than generic."),
        _("5: a fresh idea or image; 1: a stock phrase."),
    ),
    "violence": (
        _("How much it describes, encourages or glorifies violence."),
        _("5: instructions to hurt someone; 1: no violence."),
    ),
}


def _guide(*, dos, donts, context, good, good_why, bad, bad_why) -> dict:
    return {"dos": dos, "donts": donts, "context": context, "good": (good, good_why), "bad": (bad, bad_why)}


_READ_ALL = _("Read every reply to the end before you order them.")
_ALL_BAD = _("Tick “All replies are bad” only when none of them is a serious attempt.")

# Per task type: do's, don'ts and one good and one bad answer, in the spirit of Open-Assistant's guidelines.
GUIDELINES = {
    "initial_prompt": _guide(
        dos=[
            _("Ask something a real person would ask: a question, a request, a task with enough detail to answer it."),
            _("Vary the topics and the kinds of task: facts, advice, writing, code, planning, explaining."),
            _("Write in the task's language, in your own words."),
        ],
        donts=[
            _("No personal data (names, addresses, phone numbers of real people)."),
            _("No copies of text from elsewhere, no tests like “hello” or “asdf”."),
            _("No requests for anything illegal or hurtful."),
        ],
        context="",
        good=_(
            "I have a 20-minute train ride each morning. Suggest a plan to learn basic Spanish in three months "
            "using only my phone."
        ),
        good_why=_("Specific, natural, and it can be answered well."),
        bad=_("spanish"),
        bad_why=_("Too vague: nobody can tell what is wanted."),
    ),
    "assistant_reply": _guide(
        dos=[
            _("Answer what was asked, correctly and completely; say so when you are not sure."),
            _("Be polite and clear; use Markdown for lists, steps and code."),
            _("Refuse harmful requests briefly and kindly, and offer a safe alternative where you can."),
        ],
        donts=[
            _("Do not make up facts, sources or links."),
            _("Do not paste output of ChatGPT or other AI models."),
            _("Do not pretend to be a person or to have done things (“I went there last year”)."),
        ],
        context=_("Prompt: “How long should I boil an egg for a soft yolk?”"),
        good=_(
            "About 6 minutes for a large egg put into boiling water, then a minute in cold water. Use 5 minutes "
            "for a runnier yolk, 7 for a firmer one."
        ),
        good_why=_("Direct, correct, and it says how to adjust."),
        bad=_("Eggs are a great source of protein. There are many ways to cook them."),
        bad_why=_("True but does not answer the question."),
    ),
    "prompter_reply": _guide(
        dos=[
            _("Write the user's next message: a follow-up, a correction, a clarification or a new related request."),
            _("React to what the assistant actually said, as a real person would."),
            _("Keep to the conversation's language and topic."),
        ],
        donts=[
            _("Do not answer as the assistant or thank it without asking anything more."),
            _("No personal data, no unrelated new topics."),
        ],
        context=_("The assistant suggested three vegetarian dinners."),
        good=_("The lentil curry sounds good. Can I make it without coconut milk? My daughter is allergic."),
        good_why=_("Builds on the reply and adds a real constraint."),
        bad=_("ok"),
        bad_why=_("Gives the assistant nothing to work with."),
    ),
    "rank_assistant_replies": _guide(
        dos=[
            _READ_ALL,
            _("Put first the reply that is most correct, helpful and safe; then clarity and tone."),
            _ALL_BAD,
        ],
        donts=[
            _("Do not rank by length: a short correct reply beats a long wrong one."),
            _("Do not reward confident mistakes or made-up facts."),
        ],
        context=_(
            "Prompt: “How many legs does a spider have?” Replies: A “Six.” B “Eight; insects have six.” C “Eight.”"
        ),
        good=_("B, C, A"),
        good_why=_("Correct replies first, the more informative one on top; the wrong one last."),
        bad=_("A, C, B"),
        bad_why=_("The shortest first, although it is wrong."),
    ),
    "rank_prompter_replies": _guide(
        dos=[
            _READ_ALL,
            _(
                "Put first the user message that moves the conversation on best: natural, on topic, "
                "clear about what it wants."
            ),
            _ALL_BAD,
        ],
        donts=[
            _("Do not rank by length or by how polite the user is."),
            _("Do not put first a message that answers as the assistant."),
        ],
        context=_(
            "After a recipe from the assistant, replies: A “Thanks.” B “Can I freeze the leftovers, and for how long?”"
        ),
        good=_("B, A"),
        good_why=_("B asks a useful, natural follow-up."),
        bad=_("A, B"),
        bad_why=_("A gives the conversation nowhere to go."),
    ),
    "review": _guide(
        dos=[
            _("Judge the message in its conversation: does it fit what came before?"),
            _(
                "Answer spam first; then every question you can judge. Each question says what it means, with an "
                "example."
            ),
            _("Use the whole scale: 1 means not at all, 5 means very much."),
        ],
        donts=[
            _("Do not mark a message as spam because you disagree with it or would have written it differently."),
            _("Do not let length decide quality."),
            _("Report to the moderators only what breaks the rules: illegal, hateful, personal data."),
        ],
        context=_("Reviewed: “The capital of Australia is Sydney.”"),
        good=_("Spam: no. Quality: 1. Comment: the capital is Canberra."),
        good_why=_("A serious attempt, but wrong: low quality, not spam, with a useful comment."),
        bad=_("Spam: yes. Quality: 3."),
        bad_why=_("A wrong answer is not spam, and a middle score hides the mistake."),
    ),
}


def task_guidelines(task_type: str) -> dict:
    """The guidelines of a task type; the three review types share one."""
    return GUIDELINES.get(task_type, GUIDELINES["review"])
