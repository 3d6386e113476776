-- After a benchmark run: was any work over-reserved? Every "violations" query should answer 0.
--   psql -h 127.0.0.1 -U postgres -d oasst_bench -f bench/reservation_checks.sql
-- Limits are the SPEC defaults; pass others with -v, e.g. -v num_reviews_reply=1 -v max_pending_tasks_per_user=8.
\if :{?num_reviews_initial_prompt} \else \set num_reviews_initial_prompt 3 \endif
\if :{?num_reviews_reply} \else \set num_reviews_reply 3 \endif
\if :{?num_required_rankings} \else \set num_required_rankings 3 \endif
\if :{?num_prompter_replies} \else \set num_prompter_replies 1 \endif
\if :{?max_pending_tasks_per_user} \else \set max_pending_tasks_per_user 8 \endif
\if :{?pending_tasks_window_seconds} \else \set pending_tasks_window_seconds 300 \endif
\pset footer off

\echo '== what the run produced'
SELECT state, count(*) AS trees FROM tasks_messagetree GROUP BY state ORDER BY trees DESC;
SELECT type, count(*) AS tasks, count(*) FILTER (WHERE done) AS done, count(*) FILTER (WHERE skipped) AS skipped,
       count(*) FILTER (WHERE NOT done AND NOT skipped AND NOT expired) AS still_open
FROM tasks_task GROUP BY type ORDER BY tasks DESC;
SELECT (SELECT count(*) FROM tasks_message) AS messages, (SELECT count(*) FROM tasks_review) AS reviews,
       (SELECT count(*) FROM ranking_ranking) AS rankings;

\echo '== over-reservation: more reviews, rankings, replies or tree messages than allowed'
SELECT 'messages reviewed more often than required' AS check, count(*) AS violations,
       coalesce(max(n), 0) AS worst
FROM (SELECT m.id, count(r.id) AS n,
             CASE WHEN m.parent_id IS NULL THEN :num_reviews_initial_prompt ELSE :num_reviews_reply END AS required
      FROM tasks_message m JOIN tasks_review r ON r.message_id = m.id GROUP BY m.id) s
WHERE n > required
UNION ALL
SELECT 'parents ranked more often than required', count(*), coalesce(max(n), 0)
FROM (SELECT parent_id, count(*) AS n FROM ranking_ranking GROUP BY parent_id) s
WHERE n > :num_required_rankings
UNION ALL
SELECT 'parents with more live (not deleted, not rejected) replies than their limit', count(*), coalesce(max(n), 0)
FROM (SELECT p.id, count(c.id) AS n,
             CASE WHEN p.role = 'prompter' THEN t.max_children_count ELSE :num_prompter_replies END AS lim
      FROM tasks_message p JOIN tasks_messagetree t ON t.id = p.tree_id
      JOIN tasks_message c ON c.parent_id = p.id AND NOT c.deleted AND c.review_result IS DISTINCT FROM false
      GROUP BY p.id, p.role, t.max_children_count) s
WHERE n > lim
UNION ALL
SELECT 'trees with more live (not rejected) messages than the goal size', count(*), coalesce(max(n), 0)
FROM (SELECT t.id, t.goal_tree_size, count(m.id) AS n
      FROM tasks_messagetree t JOIN tasks_message m ON m.tree_id = t.id
      WHERE NOT m.deleted AND m.review_result IS DISTINCT FROM false GROUP BY t.id) s
WHERE n > goal_tree_size
UNION ALL
SELECT 'messages handed out for review (done or open) beyond the need', count(*), coalesce(max(n), 0)
FROM (SELECT m.id, count(t.id) AS n,
             CASE WHEN m.parent_id IS NULL THEN :num_reviews_initial_prompt ELSE :num_reviews_reply END AS required
      FROM tasks_message m JOIN tasks_task t ON t.item_id = m.id AND t.type LIKE 'label_%'
      WHERE NOT t.skipped AND NOT t.expired GROUP BY m.id) s
WHERE n > required
UNION ALL
SELECT 'parents handed out for ranking (done or open) beyond the need', count(*), coalesce(max(n), 0)
FROM (SELECT item_id, count(*) AS n FROM tasks_task WHERE type LIKE 'rank_%' AND NOT skipped AND NOT expired
      GROUP BY item_id) s
WHERE n > :num_required_rankings
UNION ALL
SELECT 'parents handed out for replies (done or open) beyond the limit', count(*), coalesce(max(n), 0)
FROM (SELECT p.id, count(t.id) AS n,
             CASE WHEN p.role = 'prompter' THEN tr.max_children_count ELSE :num_prompter_replies END
             + (SELECT count(*) FROM tasks_message c WHERE c.parent_id = p.id
                AND (c.deleted OR c.review_result = false)) AS lim
      FROM tasks_message p JOIN tasks_messagetree tr ON tr.id = p.tree_id
      JOIN tasks_task t ON t.item_id = p.id AND t.type IN ('assistant_reply', 'prompter_reply')
      WHERE NOT t.skipped AND NOT t.expired GROUP BY p.id, p.role, tr.max_children_count) s
WHERE n > lim;

\echo '== for information: parents above their limit when rejected replies are counted too'
\echo '   (allowed: a rejected reply stops counting and its slot is offered again, SPEC "growing")'
SELECT p.role AS parent_role, count(*) AS parents, max(n) AS most_replies, sum(rejected) AS rejected_replies
FROM (SELECT p.id, p.role, count(c.id) AS n, count(c.id) FILTER (WHERE c.review_result = false) AS rejected,
             CASE WHEN p.role = 'prompter' THEN t.max_children_count ELSE :num_prompter_replies END AS lim
      FROM tasks_message p JOIN tasks_messagetree t ON t.id = p.tree_id
      JOIN tasks_message c ON c.parent_id = p.id AND NOT c.deleted
      GROUP BY p.id, p.role, t.max_children_count) p
WHERE n > lim GROUP BY p.role;

\echo '== duplicates: one user, one item'
SELECT 'tasks handed twice to one user for one item (same kind)' AS check, count(*) AS violations
FROM (SELECT user_id, item_id, left(type, 4) FROM tasks_task WHERE item_id IS NOT NULL AND NOT expired
      GROUP BY 1, 2, 3 HAVING count(*) > 1) s
UNION ALL
SELECT 'two replies by one user to one parent', count(*)
FROM (SELECT parent_id, author_id FROM tasks_message WHERE parent_id IS NOT NULL
      GROUP BY 1, 2 HAVING count(*) > 1) s
UNION ALL
SELECT 'reviews of one''s own message', count(*)
FROM tasks_review r JOIN tasks_message m ON m.id = r.message_id WHERE m.author_id = r.user_id
UNION ALL
SELECT 'same text twice from one user', count(*)
FROM (SELECT author_id, text FROM tasks_message GROUP BY 1, 2 HAVING count(*) > 1) s;

\echo '== one user, concurrent requests (task_loop.py --burst): the pending cap, one open task per item'
\echo '   (open tasks only: a task still open was open when each later one was handed out)'
SELECT 'open tasks of one user beyond the pending cap within one window' AS check, count(*) AS violations,
       coalesce(max(n), 0) AS worst
FROM (SELECT t.id, (SELECT count(*) FROM tasks_task o
                    WHERE o.user_id = t.user_id AND NOT o.done AND NOT o.skipped AND NOT o.expired
                      AND o.created_at <= t.created_at
                      AND o.created_at > t.created_at - make_interval(secs => :pending_tasks_window_seconds)) AS n
      FROM tasks_task t WHERE NOT t.done AND NOT t.skipped AND NOT t.expired) s
WHERE n > :max_pending_tasks_per_user
UNION ALL
SELECT 'items held by one user in two open tasks', count(*), coalesce(max(n), 0)
FROM (SELECT user_id, item_id, count(*) AS n FROM tasks_task
      WHERE item_id IS NOT NULL AND NOT done AND NOT skipped AND NOT expired GROUP BY 1, 2 HAVING count(*) > 1) s;

\echo '== counters agree with the rows they count'
SELECT 'review_count differs from reviews' AS check, count(*) AS violations
FROM tasks_message m WHERE m.review_count <> (SELECT count(*) FROM tasks_review r WHERE r.message_id = m.id)
UNION ALL
SELECT 'ranking_count differs from rankings', count(*)
FROM tasks_message m WHERE m.ranking_count <> (SELECT count(*) FROM ranking_ranking r WHERE r.parent_id = m.id)
UNION ALL
SELECT 'children_count differs from live replies', count(*)
FROM tasks_message m WHERE m.children_count <> (SELECT count(*) FROM tasks_message c WHERE c.parent_id = m.id
                                                 AND NOT c.deleted AND c.review_result IS DISTINCT FROM false)
UNION ALL
SELECT '*_pending differs from open tasks', count(*)
FROM tasks_message m
WHERE m.reviews_pending <> (SELECT count(*) FROM tasks_task t WHERE t.item_id = m.id AND t.type LIKE 'label_%'
                            AND NOT t.done AND NOT t.skipped AND NOT t.expired)
   OR m.rankings_pending <> (SELECT count(*) FROM tasks_task t WHERE t.item_id = m.id AND t.type LIKE 'rank_%'
                             AND NOT t.done AND NOT t.skipped AND NOT t.expired)
   OR m.replies_pending <> (SELECT count(*) FROM tasks_task t WHERE t.item_id = m.id AND t.type LIKE '%_reply'
                            AND t.type NOT LIKE 'label_%' AND NOT t.done AND NOT t.skipped AND NOT t.expired)
UNION ALL
SELECT 'tree message_count differs from live messages', count(*)
FROM tasks_messagetree t
WHERE t.message_count <> (SELECT count(*) FROM tasks_message m WHERE m.tree_id = t.id AND NOT m.deleted
                          AND m.review_result IS DISTINCT FROM false);

\echo '== deadlocks PostgreSQL detected in this database since its statistics were reset'
SELECT datname, deadlocks, xact_rollback FROM pg_stat_database WHERE datname = current_database();
