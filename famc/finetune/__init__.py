"""Fine-tuning extracted members against the member below (REG-NAS §4.4): the losses
(``famc.finetune.losses``) and the build's optional stage between evaluate and ship
(``famc.finetune.stage``)."""
