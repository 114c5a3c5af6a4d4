-- A step bumps its episode's last_activity_at at most once a second (see
-- the Postgres file): one write fewer per step. The fence is unchanged:
-- the step's INSERT selects the episode row under the file's write lock.
DROP TRIGGER revenant_steps_touch_episode;
CREATE TRIGGER revenant_steps_touch_episode AFTER INSERT ON revenant_steps
BEGIN
    UPDATE revenant_episodes SET last_activity_at = NEW.finished_at
    WHERE id = NEW.episode_id
      AND (last_activity_at IS NULL OR last_activity_at < strftime('%Y-%m-%d %H:%M:%f', NEW.finished_at, '-1 seconds'));
END;
