from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('training', '0006_trainingrun_in_service'),
    ]

    operations = [
        migrations.AlterField(
            model_name='trainingrun',
            name='kind',
            field=models.CharField(choices=[('reward_model', 'reward model'), ('ppo', 'PPO'), ('dpo', 'DPO'), ('sft', 'SFT'), ('challenge', 'challenge')], max_length=20),
        ),
    ]
