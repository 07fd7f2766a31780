"""The marked copy of two private submitit methods (submitit 1.5.4); guarded by
``tests/nnunet/test_upstream_copies.py``, which fails when the installed submitit's originals change.
"""
from __future__ import annotations


import submitit

from atso_nnunet.execution.slurm.env import submission_env

class _SubmititSlurmExecutor(submitit.SlurmExecutor):
    """submitit's SLURM executor, with ``sbatch`` run in :func:`submission_env`.

    The two methods are submitit 1.5.4's, changed only where marked: submitit runs sbatch in the
    caller's environment and builds the executor of a job array as its own base class.
    """

    def _submit_command(self, command: str) -> submitit.core.core.Job:
        import uuid

        from submitit.core import utils

        tmp_uuid = uuid.uuid4().hex
        submission_file_path = (utils.JobPaths.get_first_id_independent_folder(self.folder)
                                / f".submission_file_{tmp_uuid}.sh")
        with submission_file_path.open("w") as f:
            f.write(self._make_submission_file_text(command, tmp_uuid))
        command_list = self._make_submission_command(submission_file_path)
        output = utils.CommandFunction(command_list, verbose=False, env=submission_env())()  # changed: env
        job_id = self._get_job_id_from_submission_command(output)
        job = self.job_class(folder=self.folder, job_id=job_id, tasks=list(range(self._num_tasks())))
        job.paths.move_temporary_file(submission_file_path, "submission_file", keep_as_symlink=True)
        self._write_job_id(job.job_id, tmp_uuid)
        self._set_job_permissions(job.paths.folder)
        return job

    def _internal_process_submissions(self, delayed_submissions: list) -> list:
        import uuid

        from submitit.core import utils

        if len(delayed_submissions) == 1:
            return super()._internal_process_submissions(delayed_submissions)
        folder = utils.JobPaths.get_first_id_independent_folder(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        timeout_min = self.parameters.get("time", 5)
        pickle_paths = []
        for d in delayed_submissions:
            pickle_path = folder / f"{uuid.uuid4().hex}.pkl"
            d.set_timeout(timeout_min, self.max_num_timeout)
            d.dump(pickle_path)
            pickle_paths.append(pickle_path)
        n = len(delayed_submissions)
        array_ex = type(self)(self.folder, self.max_num_timeout)  # changed: this class, not submitit's
        array_ex.update_parameters(**self.parameters)
        array_ex.parameters["map_count"] = n
        self._throttle()
        first_job = array_ex._submit_command(self._submitit_command_str)
        tasks_ids = list(range(first_job.num_tasks))
        jobs = [submitit.SlurmJob(folder=self.folder, job_id=f"{first_job.job_id}_{a}", tasks=tasks_ids)
                for a in range(n)]
        for job, pickle_path in zip(jobs, pickle_paths):
            job.paths.move_temporary_file(pickle_path, "submitted_pickle")
        return jobs
