"""Rows for the profile tests, made directly: a user's messages in every review state and their trees."""

from tasks.models import Message, MessageTree


def tree_make(**fields) -> MessageTree:
    return MessageTree.objects.create(lang="en", goal_tree_size=12, max_depth=3, max_children_count=3, **fields)


def contributions(user, n: int) -> list[Message]:
    """n messages by the user in every review state: prompts with their trees, and replies."""
    made = []
    for i in range(n):
        if i % 3 == 0:
            tree = tree_make(state="growing", message_count=4, accepted_count=3)
            made.append(Message.objects.create(tree=tree, author=user, role="prompter", text=f"Prompt {i}?",
                                               lang="en", review_result=True))
        else:
            tree = tree_make(state="ready_for_export")
            parent = Message.objects.create(tree=tree, role="prompter", text=f"Someone asks {i}", lang="en")
            made.append(Message.objects.create(tree=tree, parent=parent, author=user, role="assistant", depth=1,
                                               text=f"Reply {i}", lang="en", review_result=[None, False][i % 2],
                                               rank=i % 3))
    return made
