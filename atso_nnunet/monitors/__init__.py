"""What a run can know without ground truth: the pseudo-label volume drift monitor (``drift``), the
stability filter (``stability``), the rule that picks the generation to ship (``ship_rule``) and the
report's 'Without labels' section (``without_labels``). Arrays and numbers only: no nnU-Net, no torch.
"""
